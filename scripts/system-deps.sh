#!/usr/bin/env bash
# Install the Debian packages loopwright's tests and demo use, when run as root on a
# Debian-like machine and only those still missing. Elsewhere, say what is missing.
set -euo pipefail
# ripgrep: the Grep tool; bubblewrap: the process sandbox.
packages=(ripgrep bubblewrap)
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
