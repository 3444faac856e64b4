#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for the tests under a temporary directory and prints the
# `export USHER_TEST_POSTGRES_URL=...` line to evaluate. Nothing of the host's own clusters is used.
# Usage: eval "$(scripts/pg-start.sh)"; ... ; scripts/pg-stop.sh "$USHER_TEST_PG_DIR"
set -euo pipefail
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2
  exit 1
fi
PORT=${USHER_TEST_PG_PORT:-54329}
DIR=$(mktemp -d /tmp/usher-pg.XXXXXX)
chmod 755 "$DIR"
RUN=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$DIR"
  RUN=(runuser -u postgres --)
fi
"${RUN[@]}" "$PGBIN/initdb" -D "$DIR/data" -A trust -U usher -E UTF8 >"$DIR/initdb.log" 2>&1
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=300" \
  start >&2
echo "export USHER_TEST_PG_DIR=$DIR"
echo "export USHER_TEST_POSTGRES_URL=postgres://usher@127.0.0.1:$PORT/postgres"
