#!/usr/bin/env bash
# Install the Debian packages loopwright's tests and demo use, when run as root on a
# Debian-like machine and only those still missing. Elsewhere, say what is missing.
set -euo pipefail
# ripgrep: the Grep tool; bubblewrap: the process sandbox; postgresql: the PostgreSQL
# session store and SQL backend tests (started by the tests on 127.0.0.1); chromium: the
# web UI tests (Playwright drives it headless); git: the mcp-server-git tests.
packages=(ripgrep bubblewrap postgresql chromium git)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "note: these Debian packages are missing (install them as root): ${missing[*]}" >&2
fi
