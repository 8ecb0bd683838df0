#!/usr/bin/env bash
# Run every benchmark command the README's Benchmarks table prints, exactly as written, from the repository
# root (after README command 1 made .venv). Not part of CI (figures are read by people, not asserted):
#   bash .ci/benchmarks.sh [LOG_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
logs=${1:-bench-logs}
mkdir -p "$logs"
mapfile -t commands < <(awk '/^## Benchmarks/{on=1; next} on && /^## /{exit} on && /^\|/' README.md |
    grep -o '`\.venv/bin/python bench/[^`]*`' | tr -d '`' | awk '!seen[$0]++')
status=0
for cmd in "${commands[@]}"; do
    name=$(echo "$cmd" | sed 's|.venv/bin/python bench/||; s|[^A-Za-z0-9_.-]|_|g')
    echo "== $cmd"
    start=$SECONDS
    if bash -c "$cmd" >"$logs/$name.log" 2>&1; then
        echo "   ok in $((SECONDS - start)) s; last lines:"
    else
        echo "   FAILED (exit $?) in $((SECONDS - start)) s; last lines:"
        status=1
    fi
    tail -n 6 "$logs/$name.log" | sed 's/^/   | /'
done
exit $status
