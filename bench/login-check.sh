#!/usr/bin/env bash
# Login-check latency over loopback (DESIGN.md: p99 ≤ 5 ms networked): usherd pinned to CPU 0,
# wrk pinned to CPU 1, CONNS connections (16), GET /usher/loginCheck for a user who holds a login role
# through a resource-group assignment and a nested group. Loopback only; bounded in time.
# Usage: [USHERD=path] [RUNS=3] [DURATION=10] bash bench/login-check.sh
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
USHERD=${USHERD:-$ROOT/target/release/usherd}
RUNS=${RUNS:-3}
CONNS=${CONNS:-16}
DURATION=${DURATION:-10}
PORT=${USHER_PORT:-18543}
PW='Tulip-Harbor-73-Quartz'
[[ -x $USHERD ]] || { echo "build usherd first: cargo build --release -p usherd" >&2; exit 1; }
command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null; }
DATA=$(mktemp -d /tmp/usher-lc.XXXXXX)
cleanup() { [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT
USHER_BOOTSTRAP_PASSWORD=$PW taskset -c 0 "$USHERD" --data-dir "$DATA/d" --listen 127.0.0.1:$PORT >"$DATA/log" 2>&1 &
PID=$!
U=https://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf --cacert "$DATA/d/tls/ca.pem" $U/healthz >/dev/null 2>&1 && break; sleep 0.1; done
C=(--cacert "$DATA/d/tls/ca.pem" -sf)
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
AT=$(curl "${C[@]}" $U/contoso.test/oauth2/v2.0/token -d grant_type=password -d client_id=04b07795-8ddb-461a-bbee-02f9e1bf7b46 \
  -d username=admin@contoso.test -d "password=$PW" | json '["access_token"]')
H=(-H "Authorization: Bearer $AT" -H 'content-type: application/json')
SUB=$(curl "${C[@]}" "${H[@]}" $U/subscriptions | json '["value"][0]["subscriptionId"]')
ANN=$(curl "${C[@]}" "${H[@]}" $U/v1.0/users -d '{"displayName":"Ann","userPrincipalName":"ann@contoso.test","passwordProfile":{"password":"Sunny-garden-41","forceChangePasswordNextSignIn":false}}' | json '["id"]')
G1=$(curl "${C[@]}" "${H[@]}" $U/v1.0/groups -d '{"displayName":"outer"}' | json '["id"]')
G2=$(curl "${C[@]}" "${H[@]}" $U/v1.0/groups -d '{"displayName":"inner"}' | json '["id"]')
curl "${C[@]}" "${H[@]}" $U/v1.0/groups/$G1/members/\$ref -d "{\"@odata.id\":\"$U/v1.0/directoryObjects/$G2\"}" >/dev/null
curl "${C[@]}" "${H[@]}" $U/v1.0/groups/$G2/members/\$ref -d "{\"@odata.id\":\"$U/v1.0/directoryObjects/$ANN\"}" >/dev/null
RG=/subscriptions/$SUB/resourceGroups/rg1
curl "${C[@]}" "${H[@]}" -X PUT "$U$RG/providers/Microsoft.Authorization/roleAssignments/10000000-0000-4000-8000-000000000001" \
  -d "{\"properties\":{\"roleDefinitionId\":\"/subscriptions/$SUB/providers/Microsoft.Authorization/roleDefinitions/1c0163c0-47e6-4577-8991-ea5c82e286e4\",\"principalId\":\"$G1\"}}" >/dev/null
URL="$U/usher/loginCheck?principal=$ANN&machine=$RG/providers/Microsoft.Compute/virtualMachines/vm1"
ANSWER=$(curl "${C[@]}" "${H[@]}" "$URL" | json '["decision"]')
[[ $ANSWER == admin ]] || { echo "unexpected decision: $ANSWER" >&2; exit 1; }
export BENCH_TOKEN=$AT
taskset -c 1 timeout 30 wrk -t1 -c16 -d2s -s "$BENCH_DIR/wrk/get.lua" "$URL" >/dev/null 2>&1 || true
for i in $(seq 1 "$RUNS"); do
  taskset -c 1 timeout $((DURATION + 20)) wrk -t1 -c$CONNS -d${DURATION}s --timeout 5s -s "$BENCH_DIR/wrk/get.lua" "$URL" | grep WRKJSON | sed "s/^WRKJSON /run $i: /"
done
