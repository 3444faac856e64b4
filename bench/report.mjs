// Turns the raw records written by bench/run.sh into bench/results/<stamp>.json and a markdown
// table on stdout.
//
//   node bench/report.mjs RECORDS.jsonl OUT.json
//
// RECORDS.jsonl holds one JSON object per line:
//   {"kind":"wrk","measure":"cc_usherd_https","run":1, ...fields printed by wrk/token.lua}
//   {"kind":"rss","what":"usherd_idle","vmrss_kb":1234,"vmhwm_kb":2345}
//   {"kind":"meta", ...}   (merged into "machine")
// Each figure in the table is the median over the runs of that measurement, taken per column.
import { readFileSync, writeFileSync } from 'node:fs';

const [recordsPath, outPath] = process.argv.slice(2);
if (!recordsPath || !outPath) {
  console.error('usage: node report.mjs RECORDS.jsonl OUT.json');
  process.exit(2);
}

const records = readFileSync(recordsPath, 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));

const median = (xs) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const MEASURES = [
  { id: 'cc_usherd_https', label: 'usherd: client_credentials, TLS keep-alive, 16 conns' },
  { id: 'cc_peer_https', label: 'oidc-provider: client_credentials, TLS keep-alive, 16 conns' },
  { id: 'cc_peer_http', label: 'oidc-provider: client_credentials, plain HTTP keep-alive, 16 conns' },
  { id: 'pw_usherd_https', label: 'usherd: password sign-in (ROPC), TLS keep-alive, 2 conns' },
];

const machine = Object.assign({}, ...records.filter((r) => r.kind === 'meta').map(({ kind, ...m }) => m));
const measures = {};
for (const { id, label } of MEASURES) {
  const runs = records.filter((r) => r.kind === 'wrk' && r.measure === id).map(({ kind, measure, ...r }) => r);
  if (!runs.length) {
    measures[id] = { label, status: 'pending', runs: [] };
    continue;
  }
  const errors = runs.map((r) => Object.values(r.errors).reduce((a, b) => a + b, 0));
  measures[id] = {
    label,
    status: 'measured',
    runs,
    median: {
      rps: median(runs.map((r) => r.rps)),
      p50_ms: median(runs.map((r) => r.p50_us)) / 1000,
      p90_ms: median(runs.map((r) => r.p90_us)) / 1000,
      p99_ms: median(runs.map((r) => r.p99_us)) / 1000,
      max_ms: median(runs.map((r) => r.max_us)) / 1000,
      server_cpu_util: runs.every((r) => r.server_cpu_s != null)
        ? median(runs.map((r) => r.server_cpu_s / r.duration_s))
        : null,
    },
    errors_total: errors.reduce((a, b) => a + b, 0),
    requests_total: runs.reduce((a, r) => a + r.requests, 0),
  };
}

const rss = {};
for (const r of records.filter((x) => x.kind === 'rss')) {
  rss[r.what] = { vmrss_mb: r.vmrss_kb / 1024, vmhwm_mb: r.vmhwm_kb / 1024 };
}

const rps = (id) => measures[id]?.median?.rps ?? null;
const ratio = (a, b) => (rps(a) != null && rps(b) ? rps(a) / rps(b) : null);
const ratios = {
  usherd_https_over_peer_https: ratio('cc_usherd_https', 'cc_peer_https'),
  usherd_https_over_peer_http: ratio('cc_usherd_https', 'cc_peer_http'),
};

const verdict = (ok) => (ok == null ? 'pending' : ok ? 'met' : '**not met**');
const targets = {
  cc_rps_per_core_ge_10000: rps('cc_usherd_https') == null ? null : rps('cc_usherd_https') >= 10000,
  cc_ratio_ge_3x_peer_https: ratios.usherd_https_over_peer_https == null ? null : ratios.usherd_https_over_peer_https >= 3,
  cc_ratio_ge_3x_peer_http: ratios.usherd_https_over_peer_http == null ? null : ratios.usherd_https_over_peer_http >= 3,
  cc_p99_lt_5ms: measures.cc_usherd_https.median ? measures.cc_usherd_https.median.p99_ms < 5 : null,
  pw_rps_per_core_ge_30: rps('pw_usherd_https') == null ? null : rps('pw_usherd_https') >= 30,
  usherd_idle_rss_le_50mb: rss.usherd_idle ? rss.usherd_idle.vmrss_mb <= 50 : null,
};

const out = { generated_at: new Date().toISOString(), machine, measures, ratios, rss, targets };
writeFileSync(outPath, `${JSON.stringify(out, null, 2)}\n`);

const f = (x, d = 1) => (x == null ? 'pending' : x.toFixed(d));
const lines = [];
lines.push('| measurement | req/s (median of runs) | p50 ms | p99 ms | server CPU (1.00 = one core) | errors / requests |');
lines.push('|---|---:|---:|---:|---:|---:|');
for (const { id } of MEASURES) {
  const m = measures[id];
  if (!m.median) {
    lines.push(`| ${m.label} | pending | pending | pending | pending | pending |`);
  } else {
    lines.push(`| ${m.label} | ${f(m.median.rps, 0)} | ${f(m.median.p50_ms, 2)} | ${f(m.median.p99_ms, 2)} | ${f(m.median.server_cpu_util, 2)} | ${m.errors_total} / ${m.requests_total} |`);
  }
}
lines.push('');
lines.push('| ratio | value |');
lines.push('|---|---:|');
lines.push(`| usherd (TLS) / oidc-provider (TLS) | ${ratios.usherd_https_over_peer_https == null ? 'pending' : `${f(ratios.usherd_https_over_peer_https, 2)}×`} |`);
lines.push(`| usherd (TLS) / oidc-provider (plain HTTP) | ${ratios.usherd_https_over_peer_http == null ? 'pending' : `${f(ratios.usherd_https_over_peer_http, 2)}×`} |`);
lines.push('');
lines.push('| memory | VmRSS MB | VmHWM MB |');
lines.push('|---|---:|---:|');
for (const [what, label] of [
  ['usherd_idle', 'usherd idle (after start + one request)'],
  ['usherd_after_cc_usherd_https_1', 'usherd after the first client_credentials run'],
  ['usherd_after_pw_usherd_https_1', 'usherd after the first password sign-in run'],
  ['usherd_after_load', 'usherd after all load'],
  ['peer_idle', 'oidc-provider idle (after start + one request)'],
  ['peer_after_load', 'oidc-provider after all load'],
]) {
  const r = rss[what];
  lines.push(`| ${label} | ${r ? f(r.vmrss_mb) : 'pending'} | ${r ? f(r.vmhwm_mb) : 'pending'} |`);
}
lines.push('');
lines.push('| target (DESIGN.md) | verdict |');
lines.push('|---|---|');
lines.push(`| ≥ 10,000 client-credentials grants/s per core | ${verdict(targets.cc_rps_per_core_ge_10000)} |`);
lines.push(`| ≥ 3× oidc-provider over TLS (like for like) | ${verdict(targets.cc_ratio_ge_3x_peer_https)} |`);
lines.push(`| ≥ 3× oidc-provider over plain HTTP (the anchor's condition; usherd still on TLS) | ${verdict(targets.cc_ratio_ge_3x_peer_http)} |`);
lines.push(`| p99 < 5 ms at 16 clients | ${verdict(targets.cc_p99_lt_5ms)} |`);
lines.push(`| ≥ 30 password sign-ins/s per core | ${verdict(targets.pw_rps_per_core_ge_30)} |`);
lines.push(`| usherd idle RSS ≤ 50 MB | ${verdict(targets.usherd_idle_rss_le_50mb)} |`);
console.log(lines.join('\n'));
