#!/usr/bin/env bash
# Token-endpoint benchmark: usherd against the peer oidc-provider, on this machine, loopback only.
# See bench/README.md. Usage: bash bench/run.sh
#
# Environment (all optional):
#   BENCH_TARGETS  "usherd peer" (default), "peer" or "usherd"
#   SKIP_BUILD=1   use the existing target/release/usherd
#   USHERD         path of the usherd binary (default target/release/usherd)
#   RUNS=3 DURATION=10 WARMUP=2 CONNS=16 PW_CONNS=2   wrk settings (seconds, connections)
#   SERVER_CPU=0 LOAD_CPU=1                           CPU the servers / wrk are pinned to
#   USHER_PORT=18443 PEER_HTTP_PORT=13000 PEER_HTTPS_PORT=13443
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_TARGETS=${BENCH_TARGETS:-usherd peer}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-16}
PW_CONNS=${PW_CONNS:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
USHER_PORT=${USHER_PORT:-18443}
PEER_HTTP_PORT=${PEER_HTTP_PORT:-13000}
PEER_HTTPS_PORT=${PEER_HTTPS_PORT:-13443}
USHERD=${USHERD:-$ROOT/target/release/usherd}
DOMAIN=contoso.test
CLI_CLIENT_ID=04b07795-8ddb-461a-bbee-02f9e1bf7b46
ADMIN_PASSWORD='Tulip-Harbor-73-Quartz'
USER_UPN="bench-user@$DOMAIN"
USER_PASSWORD='Maple-Orbit-58-Violet'
# (neither password may contain the user's name: the tenant policy, D2, refuses that)
PEER_CLIENT_ID=bench
PEER_CLIENT_SECRET=bench-secret-0123456789abcdef
PEER_SCOPE=api.read
LUA=$BENCH_DIR/wrk/token.lua

want() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v taskset >/dev/null || need_pkgs+=(util-linux)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need_pkgs[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
fi
command -v node >/dev/null || die "node (>= 20.19) is required for the peer"
command -v npm >/dev/null || die "npm is required for the peer"
if [[ $(nproc) -lt 2 ]]; then
  die "needs at least 2 CPUs (server on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU)"
fi

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=$BENCH_DIR/results
RAW=$RESULTS/raw-$STAMP
mkdir -p "$RAW"
RECORDS=$RAW/records.jsonl
: >"$RECORDS"
TMP=$(mktemp -d /tmp/usher-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  cp "$TMP"/*.log "$RAW"/ 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
urlenc() { node -e 'process.stdout.write(encodeURIComponent(process.argv[1]))' "$1"; }
# jget FILE KEY: a top-level string/number field of a JSON file ("" when absent).
jget() { node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=o[process.argv[2]];process.stdout.write(v==null?"":String(v))' "$1" "$2"; }
rss_record() { # WHAT PID
  local rss hwm
  rss=$(awk '/^VmRSS:/{print $2}' "/proc/$2/status")
  hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$2/status")
  printf '{"kind":"rss","what":"%s","pid":%d,"vmrss_kb":%d,"vmhwm_kb":%d}\n' "$1" "$2" "$rss" "$hwm" >>"$RECORDS"
  log "RSS $1: $((rss / 1024)) MB (peak $((hwm / 1024)) MB)"
}

# cpu_ticks PID: utime+stime of a process, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
PEER_PID=0
USHERD_PID=0

# wrk_once MEASURE RUN CONNS URL BODY: a warm-up of WARMUP s, then DURATION s measured.
wrk_once() {
  local measure=$1 run=$2 conns=$3 url=$4 body=$5 out line
  out=$TMP/wrk-$measure-$run.log
  BENCH_BODY=$body timeout $((WARMUP + 20)) taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$conns" -d"${WARMUP}s" --timeout 5s -s "$LUA" "$url" >/dev/null
  local pid=$PEER_PID t0 t1
  [[ $measure == *usherd* ]] && pid=$USHERD_PID
  t0=$(cpu_ticks "$pid")
  BENCH_BODY=$body timeout $((DURATION + 20)) taskset -c "$LOAD_CPU" \
    wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 5s --latency -s "$LUA" "$url" >"$out"
  t1=$(cpu_ticks "$pid")
  line=$(grep '^WRKJSON ' "$out" | head -n1 | sed 's/^WRKJSON {//') || die "no result from wrk ($out)"
  # server_cpu_s: CPU time (user+system) the server used during the measured run; divided by
  # DURATION it tells whether the server's core was saturated.
  printf '{"kind":"wrk","measure":"%s","run":%d,"server_cpu_s":%s,%s\n' "$measure" "$run" \
    "$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}')" "$line" >>"$RECORDS"
  log "$measure run $run: $(grep -E 'Requests/sec|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
  # usherd's memory after each of its measurements, to see which load grows it.
  if [[ $measure == *usherd* ]]; then rss_record "usherd_after_${measure}_$run" "$USHERD_PID"; fi
}

# ---------------------------------------------------------------- meta
export RUNS DURATION WARMUP CONNS PW_CONNS SERVER_CPU LOAD_CPU BENCH_TARGETS
node -e '
const os=require("os"),cp=require("child_process");
const sh=(c)=>{const r=cp.spawnSync("sh",["-c",c],{encoding:"utf8"});return r.error?null:((r.stdout||"")+(r.stderr||"")).trim()||null};
const lscpu=(k)=>((sh("lscpu")||"").match(new RegExp("^"+k+":\\s*(.*)$","m"))||[])[1]||null;
const cpu=(require("fs").readFileSync("/proc/cpuinfo","utf8").match(/^model name\s*:\s*(.*)$/m)||[])[1];
console.log(JSON.stringify({kind:"meta",date_utc:new Date().toISOString(),cpu_model:cpu,cpus:os.cpus().length,
  mem_gib:+(os.totalmem()/2**30).toFixed(1),kernel:os.release(),node:process.version,
  wrk:(sh("wrk -v")||"").split("\n")[0].trim(),
  cpu_family_model:lscpu("CPU family")+"/"+lscpu("Model"),
  hypervisor:lscpu("Hypervisor vendor"),openssl:sh("openssl version"),rustc:sh("rustc --version"),
  usher_git:sh("git -C "+process.argv[1]+" describe --always --dirty"),
  settings:{runs:+process.env.RUNS,duration_s:+process.env.DURATION,warmup_s:+process.env.WARMUP,
    conns:+process.env.CONNS,pw_conns:+process.env.PW_CONNS,wrk_threads:1,
    server_cpu:+process.env.SERVER_CPU,load_cpu:+process.env.LOAD_CPU,targets:process.env.BENCH_TARGETS}}))
' "$ROOT" >>"$RECORDS"

# ---------------------------------------------------------------- peer: install, start, validate
if want peer; then
  log "installing the peer (npm ci)"
  (cd "$BENCH_DIR/peer" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  PEER_VERSION=$(node -p 'require(process.argv[1]).version' "$BENCH_DIR/peer/node_modules/oidc-provider/package.json")
  printf '{"kind":"meta","oidc_provider":"%s"}\n' "$PEER_VERSION" >>"$RECORDS"
  port_free "$PEER_HTTP_PORT" || die "port $PEER_HTTP_PORT is in use (set PEER_HTTP_PORT)"
  port_free "$PEER_HTTPS_PORT" || die "port $PEER_HTTPS_PORT is in use (set PEER_HTTPS_PORT)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' \
    -keyout "$TMP/peer-key.pem" -out "$TMP/peer-cert.pem" 2>/dev/null
  log "starting oidc-provider $PEER_VERSION on CPU $SERVER_CPU"
  NODE_ENV=production PEER_HTTP_PORT=$PEER_HTTP_PORT PEER_HTTPS_PORT=$PEER_HTTPS_PORT \
    PEER_TLS_CERT=$TMP/peer-cert.pem PEER_TLS_KEY=$TMP/peer-key.pem \
    PEER_CLIENT_ID=$PEER_CLIENT_ID PEER_CLIENT_SECRET=$PEER_CLIENT_SECRET PEER_SCOPE=$PEER_SCOPE \
    taskset -c "$SERVER_CPU" node "$BENCH_DIR/peer/server.mjs" >"$TMP/peer.log" 2>&1 &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  for _ in $(seq 100); do
    grep -q '^peer ready' "$TMP/peer.log" && break
    kill -0 "$PEER_PID" 2>/dev/null || { cat "$TMP/peer.log" >&2; die "peer exited"; }
    sleep 0.1
  done
  grep -q '^peer ready' "$TMP/peer.log" || die "peer did not start within 10 s"
  PEER_BODY="grant_type=client_credentials&client_id=$PEER_CLIENT_ID&client_secret=$PEER_CLIENT_SECRET&scope=$PEER_SCOPE"
  curl -sS --max-time 10 --cacert "$TMP/peer-cert.pem" -o "$TMP/peer-token.json" \
    -X POST "https://127.0.0.1:$PEER_HTTPS_PORT/token" --data "$PEER_BODY"
  curl -sS --max-time 10 --cacert "$TMP/peer-cert.pem" -o "$TMP/peer-jwks.json" "https://127.0.0.1:$PEER_HTTPS_PORT/jwks"
  sleep 1
  rss_record peer_idle "$PEER_PID"
  checked=$(node "$BENCH_DIR/check-token.mjs" "$TMP/peer-token.json" "$TMP/peer-jwks.json") ||
    die "peer does not issue ES256 JWT access tokens"
  log "peer token: $checked"
  curl -sS --max-time 10 -o "$TMP/peer-token-http.json" -X POST "http://127.0.0.1:$PEER_HTTP_PORT/token" --data "$PEER_BODY"
  node "$BENCH_DIR/check-token.mjs" "$TMP/peer-token-http.json" "$TMP/peer-jwks.json" >/dev/null ||
    die "peer over plain HTTP does not issue ES256 JWT access tokens"
  curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$TMP/peer-cert.pem" -u "$PEER_CLIENT_ID:$PEER_CLIENT_SECRET" \
    -X POST "https://127.0.0.1:$PEER_HTTPS_PORT/token" --data "grant_type=client_credentials&scope=$PEER_SCOPE" |
    grep -q 200 || die "peer refuses client_secret_basic"
fi

# ---------------------------------------------------------------- usherd: build, start, provision
if want usherd; then
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building usherd (release)"
    (cd "$ROOT" && cargo build --release -q -p usherd)
  fi
  [[ -x $USHERD ]] || die "no usherd binary at $USHERD"
  port_free "$USHER_PORT" || die "port $USHER_PORT is in use (set USHER_PORT)"
  D=$TMP/usher-data
  BASE=https://127.0.0.1:$USHER_PORT
  log "starting usherd on CPU $SERVER_CPU ($BASE, data dir $D)"
  USHER_BOOTSTRAP_PASSWORD=$ADMIN_PASSWORD taskset -c "$SERVER_CPU" \
    "$USHERD" --data-dir "$D" --listen "127.0.0.1:$USHER_PORT" >"$TMP/usherd.log" 2>&1 &
  USHERD_PID=$!
  PIDS+=("$USHERD_PID")
  for _ in $(seq 300); do
    if [[ -f $D/tls/ca.pem ]] && curl -sf --max-time 2 --cacert "$D/tls/ca.pem" "$BASE/healthz" >/dev/null 2>&1; then
      break
    fi
    kill -0 "$USHERD_PID" 2>/dev/null || { tail -n 30 "$TMP/usherd.log" >&2; die "usherd exited"; }
    sleep 0.1
  done
  curl -sf --max-time 2 --cacert "$D/tls/ca.pem" "$BASE/healthz" >/dev/null || die "usherd /healthz not up within 30 s"
  CA=$D/tls/ca.pem
  TOKEN_URL=$BASE/$DOMAIN/oauth2/v2.0/token

  # post_token OUT BODY: POST a form to the token endpoint, fail unless 200.
  post_token() {
    local code
    code=$(curl -sS --max-time 20 --cacert "$CA" -o "$1" -w '%{http_code}' -X POST "$TOKEN_URL" --data "$2")
    [[ $code == 200 ]] || die "token endpoint answered $code: $(head -c 400 "$1")"
  }
  # graph METHOD PATH JSON OUT: call Graph as the admin, fail unless 2xx.
  graph() {
    local code
    code=$(curl -sS --max-time 20 --cacert "$CA" -o "$4" -w '%{http_code}' -X "$1" "$BASE$2" \
      -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' --data "$3")
    [[ $code == 2* ]] || { log "Graph $1 $2 answered $code: $(head -c 400 "$4")"; return 1; }
  }

  SCOPE_OIDC=$(urlenc 'openid profile offline_access')
  post_token "$TMP/admin-token.json" \
    "grant_type=password&client_id=$CLI_CLIENT_ID&username=$(urlenc "admin@$DOMAIN")&password=$(urlenc "$ADMIN_PASSWORD")&scope=$SCOPE_OIDC"
  ADMIN_TOKEN=$(jget "$TMP/admin-token.json" access_token)
  sleep 1
  rss_record usherd_idle "$USHERD_PID"

  graph POST /v1.0/applications '{"displayName":"bench"}' "$TMP/app.json" || die "cannot create the application"
  APP_OBJECT_ID=$(jget "$TMP/app.json" id)
  APP_ID=$(jget "$TMP/app.json" appId)
  graph POST /v1.0/servicePrincipals "{\"appId\":\"$APP_ID\"}" "$TMP/sp.json" || die "cannot create the service principal"
  graph POST "/v1.0/applications/$APP_OBJECT_ID/addPassword" '{"passwordCredential":{"displayName":"bench"}}' "$TMP/secret.json" ||
    die "cannot add a client secret"
  APP_SECRET=$(jget "$TMP/secret.json" secretText)
  [[ -n $APP_SECRET ]] || die "addPassword returned no secretText"
  CC_BODY="grant_type=client_credentials&client_id=$APP_ID&client_secret=$(urlenc "$APP_SECRET")&scope=$(urlenc "$BASE/.default")"
  post_token "$TMP/cc-token.json" "$CC_BODY"
  curl -sS --max-time 10 --cacert "$CA" -o "$TMP/usher-jwks.json" "$BASE/$DOMAIN/discovery/v2.0/keys"
  checked=$(node "$BENCH_DIR/check-token.mjs" "$TMP/cc-token.json" "$TMP/usher-jwks.json") ||
    die "usherd does not issue ES256 JWT access tokens"
  log "usherd token: $checked"
  code=$(curl -sS --max-time 20 --cacert "$CA" -o "$TMP/cc-basic.json" -w '%{http_code}' -u "$APP_ID:$APP_SECRET" \
    -X POST "$TOKEN_URL" --data "grant_type=client_credentials&scope=$(urlenc "$BASE/.default")")
  [[ $code == 200 ]] || log "warning: client_secret_basic answered $code (benchmark uses client_secret_post)"

  # A plain user for the password sign-in rate (falls back to the admin if Graph refuses).
  PW_USER=$USER_UPN
  PW_PASS=$USER_PASSWORD
  if ! graph POST /v1.0/users "{\"accountEnabled\":true,\"displayName\":\"bench user\",\"userPrincipalName\":\"$USER_UPN\",\"mailNickname\":\"bench-user\",\"passwordProfile\":{\"password\":\"$USER_PASSWORD\",\"forceChangePasswordNextSignIn\":false}}" "$TMP/user.json"; then
    log "warning: could not create $USER_UPN; measuring sign-ins of admin@$DOMAIN"
    PW_USER=admin@$DOMAIN
    PW_PASS=$ADMIN_PASSWORD
  fi
  PW_BODY="grant_type=password&client_id=$CLI_CLIENT_ID&username=$(urlenc "$PW_USER")&password=$(urlenc "$PW_PASS")&scope=$SCOPE_OIDC"
  post_token "$TMP/pw-token.json" "$PW_BODY"
fi

# ---------------------------------------------------------------- load: RUNS rounds, interleaved
# Anything else busy on these 2 cores (a cargo build, say) spoils the numbers: say so, and record it.
busy=$(for n in cargo rustc cc1 cc1plus ld mold; do pgrep -x "$n" || true; done | paste -sd,)
printf '{"kind":"meta","loadavg_before":"%s","other_busy_pids":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$busy" >>"$RECORDS"
[[ -z $busy ]] || log "warning: compilers are running (pids $busy): numbers will be low"
for run in $(seq "$RUNS"); do
  log "round $run of $RUNS"
  if want usherd; then
    wrk_once cc_usherd_https "$run" "$CONNS" "$TOKEN_URL" "$CC_BODY"
  fi
  if want peer; then
    wrk_once cc_peer_https "$run" "$CONNS" "https://127.0.0.1:$PEER_HTTPS_PORT/token" "$PEER_BODY"
    wrk_once cc_peer_http "$run" "$CONNS" "http://127.0.0.1:$PEER_HTTP_PORT/token" "$PEER_BODY"
  fi
  if want usherd; then
    wrk_once pw_usherd_https "$run" "$PW_CONNS" "$TOKEN_URL" "$PW_BODY"
  fi
done

busy=$(for n in cargo rustc cc1 cc1plus ld mold; do pgrep -x "$n" || true; done | paste -sd,)
printf '{"kind":"meta","loadavg_after":"%s","other_busy_pids_after":"%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$busy" >>"$RECORDS"
[[ -z $busy ]] || log "warning: compilers were running at the end of the load (pids $busy): numbers may be low"
sleep 1
if want usherd; then rss_record usherd_after_load "$USHERD_PID"; fi
if want peer; then rss_record peer_after_load "$PEER_PID"; fi

OUT_JSON=$RESULTS/$STAMP.json
node "$BENCH_DIR/report.mjs" "$RECORDS" "$OUT_JSON" | tee "$RESULTS/$STAMP.md"
log "raw numbers: ${OUT_JSON#"$ROOT"/}; wrk and server logs: ${RAW#"$ROOT"/}/"
