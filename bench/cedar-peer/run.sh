#!/usr/bin/env bash
# Builds the Cedar peer (release) and runs it: decision.rs's shape (5,006 assignments), then the
# tenant shape at 5,000, 100,000 and 1,000,000 assignments (TENANT_SUBS 1, 20, 200), each size in
# its own process so VmRSS is that size's alone. Compare with the usher benches run the same way:
#   taskset -c 1 cargo bench -p usher-authz --bench decision
#   TENANT_SUBS=N taskset -c 1 cargo bench -p usher-authz --bench tenant
# Knobs: SIZES="1 20 200" (subscriptions), CPU=1 (taskset), SKIP_BUILD=1, and the program's own
# (BUDGET_S, MAX_SAMPLES, MAX_BUILD_S, MAX_RSS_MB, TENANT_GROUP_SHARE): see src/main.rs.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/cedar-peer-target}"
SIZES="${SIZES:-1 20 200}"
CPU="${CPU:-1}"
if [[ -z "${SKIP_BUILD:-}" ]]; then
  nice -n 19 cargo build --release --locked -j 1
fi
BIN="$CARGO_TARGET_DIR/release/usher-cedar-peer"
busy=$(pgrep -x rustc || true; pgrep -x cargo || true)
if [[ -n "$busy" ]]; then
  echo "warning: a compiler is running (pids: $(echo $busy)); the numbers will be noisy" >&2
fi
echo "== flat (decision.rs's data)"
taskset -c "$CPU" "$BIN" flat
for s in $SIZES; do
  echo "== tenant, TENANT_SUBS=$s ($((s * 5000)) assignments)"
  # A bound on the whole process too: 1,000,000 policies may not fit in the time.
  TENANT_SUBS="$s" timeout "${TIMEOUT_S:-1800}" taskset -c "$CPU" "$BIN" tenant || echo "(exit $?)"
done
