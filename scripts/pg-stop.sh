#!/usr/bin/env bash
# Stops and removes a cluster made by pg-start.sh.
set -uo pipefail
DIR=${1:?usage: pg-stop.sh DIR}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
RUN=()
[ "$(id -u)" = 0 ] && RUN=(runuser -u postgres --)
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1
rm -rf "$DIR"
