#!/usr/bin/env bash
# A Python virtual environment with the real Azure SDK's azure-identity from PyPI (pinned), for
# the tests that run it against the agent's IMDS. Prints `export USHER_TEST_PYTHON=...`.
set -euo pipefail
VENV="${USHER_TEST_VENV:-/var/tmp/usher-test-venv}"
WANT="azure-identity==1.27.0"
if ! "$VENV/bin/python" -c 'import azure.identity, sys; sys.exit(0 if azure.identity.__version__ == "1.27.0" else 1)' 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WANT" >&2
fi
echo "export USHER_TEST_PYTHON=$VENV/bin/python"
