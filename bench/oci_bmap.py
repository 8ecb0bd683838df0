"""Benchmark: the OCI export vs the raw export of one sealed image; bytes `bmaptool copy` writes vs raw size.

    python bench/oci_bmap.py               (builds the testbed first, not timed; run as root)
    python bench/oci_bmap.py BUILD_DIR     (a sealed build: build/<spec>/<build-id>, run as root)
    python bench/oci_bmap.py BUILD_DIR --image PATH     (another disk of that build, e.g. disk.qcow2)

Exports the build's sealed image again into a temp folder, once as raw (qemu-img + bmaptool create) and once
as oci (offline read with debugfs, layer, container-profile check, layout, docker-archive), and prints the
wall time and size of each; then copies the raw image to a file with `bmaptool copy` and prints the bytes
it passed to write() (the kernel's I/O accounting of the process) against the raw image's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.core import digest
from factory.core.record import BuildDir
from factory.host import tools
from factory.spec import ExportFormat, load_spec
from factory.stages.export import export

MIB = 1024**2


def bmaptool_copy_bytes(bmap: Path, image: Path, target: Path) -> int:
    script = 'bmaptool copy --bmap "$1" "$2" "$3" >/dev/null 2>&1 || exit 9; cat /proc/$$/io'
    out = tools.run(["sh", "-c", script, "sh", bmap, image, target], timeout=3600).stdout.decode()
    return int(dict(line.split(": ") for line in out.splitlines())["wchar"])


def _testbed_build() -> Path:
    """A sealed testbed build, made with `factory build` into a temp folder (not part of the figures)."""
    import subprocess

    root = Path(tempfile.mkdtemp(prefix="bench-oci-build-"))
    proc = subprocess.run(
        [sys.executable, "-m", "factory", "build", "specs/testbed.yaml", "--json", "--build-dir", str(root)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the testbed build failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return Path(json.loads(proc.stdout)[0]["build_dir"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("build", type=Path, nargs="?", help="a sealed build (default: build the testbed)")
    parser.add_argument("--image", type=Path, help="the disk to export (default: the sealed image)")
    parser.add_argument(
        "--spec", type=Path, default=Path(__file__).resolve().parents[1] / "specs/testbed.yaml"
    )
    args = parser.parse_args()
    build = BuildDir.open(args.build if args.build is not None else _testbed_build())
    if args.image is not None:
        image, sealed_sha = args.image, digest.sha256_file(args.image)
    else:
        seal = (build.stage("seal") or {}).get("result") or {}
        image, sealed_sha = Path(seal["sealed_image"]), seal["sealed_sha256"]
    base = load_spec(args.spec)
    with tempfile.TemporaryDirectory(prefix="bench-oci-") as tmp:
        work = Path(tmp)
        figures: dict[str, float] = {}
        for fmt in (ExportFormat.RAW, ExportFormat.OCI):
            spec = base.model_copy(update={"export": (fmt,)})
            started = time.monotonic()
            result = export.export(spec, image, sealed_sha, work / str(fmt), build_id=build.build_id)
            figures[f"{fmt}_s"] = round(time.monotonic() - started, 2)
            if fmt is ExportFormat.RAW:
                raw = result.artifacts[0]
                figures["raw_bytes"] = raw.size
                figures["raw_allocated_bytes"] = raw.path.stat().st_blocks * 512
                figures["bmap_mapped_bytes"] = raw.bmap_mapped_bytes or 0
                assert raw.bmap is not None
                figures["bmaptool_copy_written_bytes"] = bmaptool_copy_bytes(
                    raw.bmap, raw.path, work / "disk"
                )
            else:
                assert result.oci is not None
                figures["oci_layer_bytes"] = result.oci.layer_size
                figures["docker_archive_bytes"] = result.artifacts[1].size
                figures["oci_entries"] = result.oci.entries
    print(json.dumps(figures, indent=2))
    print(
        f"raw export {figures['raw_s']:.1f} s, {figures['raw_bytes'] / MIB:.0f} MiB "
        f"({figures['raw_allocated_bytes'] / MIB:.0f} MiB allocated); "
        f"oci export {figures['oci_s']:.1f} s, layer {figures['oci_layer_bytes'] / MIB:.1f} MiB "
        f"(docker-archive {figures['docker_archive_bytes'] / MIB:.1f} MiB)"
    )
    print(
        f"bmaptool copy wrote {figures['bmaptool_copy_written_bytes'] / MIB:.1f} MiB of a "
        f"{figures['raw_bytes'] / MIB:.0f} MiB raw image "
        f"({100 * figures['bmaptool_copy_written_bytes'] / figures['raw_bytes']:.1f} %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
