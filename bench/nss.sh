#!/usr/bin/env bash
# NSS lookup latency (SPEC L2): libnss_usher.so.2 against glibc's nss_files on equal data, for
# 10 and 100,000 directory users, in mount namespaces (the host's /etc is untouched).
# Usage: bash bench/nss.sh [CALLS]   (root; builds the module in release mode). With 100,000
# users a tenth of CALLS is made: nss_files reads the whole file on every call.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-20000}
BASE=1879048192
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/usher-bench-target}
cargo build --release -p usher-nss >/dev/null
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
gcc -O2 -o "$T/nssbench" bench/nss/nssbench.c
mkdir -p "$T/lib"
ln -s "$CARGO_TARGET_DIR/release/libnss_usher.so" "$T/lib/libnss_usher.so.2"
for USERS in 10 100000; do
  for KIND in usher files; do
    E="$T/etc-$KIND-$USERS"
    cp -a /etc "$E"
    python3 - "$E" "$KIND" "$USERS" "$BASE" <<'PY'
import sys
etc, kind, users, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pw = "".join(f"u{i}@contoso.test:x:{base+i}:{base+i}:u{i}@contoso.test:/home/u{i}@contoso.test:/bin/bash\n" for i in range(users))
# Every user is in usher-admins (so initgroups finds two groups): one line listing them all.
gr = "".join(f"u{i}@contoso.test:x:{base+i}:\n" for i in range(users)) + "usher-admins:x:2147352576:" + ",".join(f"u{i}@contoso.test" for i in range(users)) + "\n"
import os
if kind == "usher":
    os.makedirs(f"{etc}/usher", exist_ok=True)
    open(f"{etc}/usher/passwd", "w").write(pw)
    open(f"{etc}/usher/group", "w").write(gr)
    open(f"{etc}/nsswitch.conf", "w").write("passwd: files usher\ngroup: files usher\nshadow: files\n")
else:
    open(f"{etc}/passwd", "a").write(pw)
    open(f"{etc}/group", "a").write(gr)
    open(f"{etc}/nsswitch.conf", "w").write("passwd: files\ngroup: files\nshadow: files\n")
PY
    N=$CALLS
    [ "$USERS" -gt 1000 ] && N=$((CALLS / 10))
    echo "== $KIND, $USERS users, $N calls each"
    unshare --mount --propagation private -- sh -c \
      'mount --bind "$1" /etc && LD_LIBRARY_PATH="$2" exec "$3" "$4" "$5" "$6"' \
      sh "$E" "$T/lib" "$T/nssbench" "$N" "$USERS" "$BASE"
  done
done
