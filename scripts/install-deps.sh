#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need: a C compiler for aws-lc and the
# bundled SQLite, PostgreSQL's server binaries for the PostgreSQL tests, util-linux and iproute2
# for the machine namespaces, Python for the Azure SDK tests, and OpenSSH, sudo and the PAM
# headers for the login tests, Chromium, its WebDriver and NSS tools for the passkey tests. On CI (CI=true) the
# package lists are always refreshed first; elsewhere only when something is missing.
set -euo pipefail
PACKAGES=(gcc libc6-dev make postgresql postgresql-client ca-certificates curl util-linux iproute2 python3 python3-venv
  openssh-server openssh-client sudo libpam0g-dev chromium chromium-driver libnss3-tools)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${CI:-}" != "true" ] && [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
# Installing openssh-server must not start the host's sshd: tests run their own, in namespaces.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y --no-install-recommends "${PACKAGES[@]}"
