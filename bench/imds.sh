#!/usr/bin/env bash
# IMDS on a machine (issue 4): token requests per second served from the agent's cache, and the
# agent's memory idle and after load (DESIGN.md: agent idle RSS ≤ 20 MB). A real usherd and a real
# joined usher-agent on loopback; the agent is pinned to CPU 0, wrk to CPU 1. Bounded in time.
# Usage: [USHERD=path] [AGENT=path] [RUNS=3] [DURATION=10] [CONNS=8] bash bench/imds.sh
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
USHERD=${USHERD:-$ROOT/target/release/usherd}
AGENT=${AGENT:-$ROOT/target/release/usher-agent}
RUNS=${RUNS:-3}
CONNS=${CONNS:-8}
DURATION=${DURATION:-10}
PORT=${USHER_PORT:-18544}
IMDS_PORT=${IMDS_PORT:-18545}
PW='Tulip-Harbor-73-Quartz'
for b in "$USHERD" "$AGENT"; do
  [[ -x $b ]] || { echo "build first: cargo build --release -p usherd -p usher-agent ($b missing)" >&2; exit 1; }
done
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null; }
DATA=$(mktemp -d /tmp/usher-imds.XXXXXX)
cleanup() {
  [[ -n ${APID:-} ]] && kill "$APID" 2>/dev/null
  [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null
  wait 2>/dev/null; rm -rf "$DATA"
}
trap cleanup EXIT
rss() { awk -v k="$2:" '$1==k {printf "%.1f", $2/1024}' "/proc/$1/status"; }
USHER_BOOTSTRAP_PASSWORD=$PW taskset -c 1 "$USHERD" --data-dir "$DATA/d" --listen 127.0.0.1:$PORT >"$DATA/log" 2>&1 &
PID=$!
U=https://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf --cacert "$DATA/d/tls/ca.pem" $U/healthz >/dev/null 2>&1 && break; sleep 0.1; done
C=(--cacert "$DATA/d/tls/ca.pem" -sf)
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
AT=$(curl "${C[@]}" $U/contoso.test/oauth2/v2.0/token -d grant_type=password -d client_id=04b07795-8ddb-461a-bbee-02f9e1bf7b46 \
  -d username=admin@contoso.test -d "password=$PW" | json '["access_token"]')
H=(-H "Authorization: Bearer $AT" -H 'content-type: application/json')
SUB=$(curl "${C[@]}" "${H[@]}" $U/subscriptions | json '["value"][0]["subscriptionId"]')
RG=/subscriptions/$SUB/resourceGroups/rg1
curl "${C[@]}" "${H[@]}" -X PUT "$U$RG" -d '{"location":"southcentralus"}' >/dev/null
VM=$RG/providers/Microsoft.Compute/virtualMachines/bench1
curl "${C[@]}" "${H[@]}" -X PUT "$U$VM" -d '{"location":"southcentralus","identity":{"type":"SystemAssigned"},"properties":{"storageProfile":{"imageReference":{"publisher":"Debian","offer":"debian-12","sku":"12-gen2"}},"osProfile":{"adminUsername":"azureuser","adminPassword":"Long-enough-pass-1"}}}' >/dev/null
TOKEN=$(curl "${C[@]}" "${H[@]}" -X POST "$U$VM/onboardingToken" | json '["onboardingToken"]')
"$AGENT" --state-dir "$DATA/agent" join --server "$U" --ca-file "$DATA/d/tls/ca.pem" --token "$TOKEN" >/dev/null
taskset -c 0 "$AGENT" --state-dir "$DATA/agent" run --imds-address 127.0.0.1:$IMDS_PORT 2>"$DATA/agent.log" &
APID=$!
URL="http://127.0.0.1:$IMDS_PORT/metadata/identity/oauth2/token?api-version=2018-02-01&resource=urn:ms-drs:enterpriseregistration.windows.net"
for _ in $(seq 1 100); do curl -sf -H Metadata:true "$URL" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf -H Metadata:true "$URL" | json '["token_type"]' >/dev/null
sleep 3
echo "agent idle RSS (start, join, one token): $(rss $APID VmRSS) MB"
taskset -c 1 timeout 30 wrk -t1 -c$CONNS -d2s -s "$BENCH_DIR/wrk/imds.lua" "$URL" >/dev/null 2>&1 || true
for i in $(seq 1 "$RUNS"); do
  taskset -c 1 timeout $((DURATION + 20)) wrk -t1 -c$CONNS -d${DURATION}s --timeout 5s -s "$BENCH_DIR/wrk/imds.lua" "$URL" | grep WRKJSON | sed "s/^WRKJSON /run $i: /"
done
echo "agent RSS after load: $(rss $APID VmRSS) MB (peak VmHWM $(rss $APID VmHWM) MB)"
sleep 1
N=$(curl "${C[@]}" "${H[@]}" "$U/v1.0/auditLogs/signIns?\$top=999" | python3 -c "import json,sys; print(sum(1 for s in json.load(sys.stdin)['value'] if s.get('clientAppUsed') == 'managedIdentity'))")
echo "token requests that reached usherd during the whole run: $N (every other answer came from the agent's cache)"
