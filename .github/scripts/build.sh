#!/usr/bin/env bash
# The build step of .github/workflows/images.yml, runnable on any machine with the project checked out:
#
#   .github/scripts/build.sh SPEC [OUT]        e.g. .github/scripts/build.sh testbed
#
# From the repository root, builds SPEC (specs/SPEC.yaml) with `tox -e build-SPEC` (FACTORY_BUILD_VIA=factory: the installed `factory`
# command, the same `factory build specs/SPEC.yaml` tox runs, without making a tox venv), then lays out OUT
# (default artifacts/SPEC) for the workflow's uploads:
#   OUT/record.json  OUT/logs/...  OUT/junit.xml  OUT/sbom*   the build's record, logs, JUnit, SBOM if any
#   OUT/records/SPEC/ID/record.json                           the record again, where `factory plan` looks
#   OUT/promote/ID/{record.json,export/...raw,...} OUT/promote/LATEST   what `factory promote` needs
# Extra arguments for `factory build` go in FACTORY_BUILD_ARGS. Exits with the build's exit status; the
# artifacts are laid out even when the build failed (that is when the logs matter).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root: OUT and the build root are relative to it

spec=${1:?usage: build.sh SPEC [OUT]}
out=$(realpath -m "${2:-artifacts/$spec}")
root=${FACTORY_BUILD_DIR:-build}
spec_file=specs/$spec.yaml
[[ -f $spec_file ]] || { echo "error: $spec_file: spec not found" >&2; exit 2; }

read -r -a extra <<<"${FACTORY_BUILD_ARGS:-}"
case ${FACTORY_BUILD_VIA:-tox} in
    tox) cmd=(tox -e "build-$spec" --) ;;
    factory) cmd=(factory build "$spec_file") ;;
    *) echo "error: FACTORY_BUILD_VIA must be tox or factory, not ${FACTORY_BUILD_VIA}" >&2; exit 2 ;;
esac

status=0
"${cmd[@]}" --build-dir "$root" "${extra[@]}" || status=$?

# The build this run touched: the newest record of the spec (a resumed build keeps its old directory).
record=$(find "$root/$spec" -mindepth 2 -maxdepth 2 -name record.json -printf '%T@ %p\n' 2>/dev/null |
    sort -rn | head -n 1 | cut -d' ' -f2- || true)
if [[ -z $record ]]; then
    echo "error: $spec: the build left no record under $root/$spec (exit status $status)" >&2
    exit $((status ? status : 1))
fi
dir=$(dirname "$record")
id=$(basename "$dir")

rm -rf "$out"
mkdir -p "$out/logs" "$out/records/$spec/$id"
cp "$record" "$out/record.json"
cp "$record" "$out/records/$spec/$id/record.json"
# Logs: every *.log of the build, keeping verify/ apart from the install's. Never the build key or disks.
(cd "$dir" && find . -name '*.log' -type f -print0 | xargs -0 -r cp --parents -t "$out/logs")
[[ -f $dir/verify/junit.xml ]] && cp "$dir/verify/junit.xml" "$out/junit.xml"
find "$dir" -maxdepth 3 -type f -iname 'sbom*' -exec cp -t "$out" {} +

# For the promote job: the record and the raw export it names, at the same path relative to the build root
# (hard links: no second copy of a multi-GiB image on the runner's small disk).
if [[ $status -eq 0 && -d $dir/export ]]; then
    mkdir -p "$out/promote/$id/export"
    cp "$record" "$out/promote/$id/record.json"
    find "$dir/export" -maxdepth 1 -type f \( -name '*.raw' -o -name '*.raw.sha256' -o -name 'manifest.json' \) \
        -exec cp -l -t "$out/promote/$id/export" {} + 2>/dev/null ||
        find "$dir/export" -maxdepth 1 -type f \( -name '*.raw' -o -name '*.raw.sha256' -o -name 'manifest.json' \) \
            -exec cp -t "$out/promote/$id/export" {} +
    echo "$id" >"$out/promote/LATEST"
fi

if [[ -n ${GITHUB_OUTPUT:-} ]]; then
    { echo "build_id=$id"; echo "build_dir=$dir"; echo "status=$status"; } >>"$GITHUB_OUTPUT"
fi
echo "build.sh: $spec: build $id exit status $status; artifacts in $out"
exit "$status"
