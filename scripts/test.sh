#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts a private PostgreSQL cluster (stopped on
# exit), checks formatting and lints, then runs every test of the workspace against real SQLite,
# a real PostgreSQL and real HTTPS servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
eval "$(bash scripts/pg-start.sh)"
eval "$(bash scripts/python-deps.sh)"
trap 'bash scripts/pg-stop.sh "$USHER_TEST_PG_DIR"' EXIT
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The NSS and PAM modules are cdylibs that tests load into the real glibc and libpam, and the
# machine tests run the agent, its sshd helper and the CLI side by side: build them all first.
cargo build -p usher-nss -p usher-pam -p usher-agent -p usher-cli --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --test-threads 4
else
  cargo test --workspace --locked --no-fail-fast
fi
