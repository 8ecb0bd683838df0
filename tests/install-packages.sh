#!/usr/bin/env bash
# The Debian packages only the tests use (local stand-in services, fixtures' tools): .ci/apt-packages.txt.
# Installed when root and something is missing; otherwise the missing ones are named. The factory's own
# host tools are installed by `factory doctor --install-host-deps`, which tox runs next.
set -euo pipefail
list="$(dirname "$0")/../.ci/apt-packages.txt"
mapfile -t wanted < <(grep -v -E '^\s*(#|$)' "$list" | awk '{print $1}')
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "tests: missing Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 3
fi
echo "tests: installing ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
