"""Benchmark: the compliance scan of a testbed image, offline (copy the tree out + oscap), in seconds.

    python bench/compliance.py [--image SEALED.qcow2 | --build BUILD_DIR] [--runs N]

With --build, the build's sealed image (else its installed disk); with neither, the testbed is installed
first (not timed). Only the offline scan is measured: the testbed guest carries no oscap (its media are
built from a handful of Debian packages), so an in-guest scan would first need OpenSCAP and its ~40
libraries put into the image, which is exactly what the offline scan avoids.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vm"))

from factory.core import digest
from factory.core.record import BuildDir
from factory.spec import Compliance, load_spec
from factory.stages.compliance import compliance

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "xccdf_org.imagefactory_profile_testbed"


def _image(args: argparse.Namespace, work: Path) -> Path:
    if args.image is not None:
        return Path(args.image)
    if args.build is not None:
        build = BuildDir.open(args.build)
        sealed = build.path / "sealed.qcow2"
        return sealed if sealed.is_file() else build.path / "disk.qcow2"
    from fixtures_verify import install_testbed

    started = time.monotonic()
    installed = install_testbed(work, "testbed")
    print(f"install (not part of the figures): {time.monotonic() - started:.1f} s")
    return Path(installed.disk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, help="a testbed image (qcow2 or raw)")
    parser.add_argument("--build", type=Path, help="a testbed build directory")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-compliance-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    image = _image(args, work)
    base = load_spec(ROOT / "specs" / "testbed.yaml")
    spec = base.model_copy(update={"compliance": Compliance(profile=PROFILE)})
    sha = digest.sha256_file(image)
    extract, scan, total = [], [], []
    for run in range(args.runs):
        started = time.monotonic()
        result = compliance.scan(spec, image, work / f"run{run}", image_sha256=sha)
        total.append(time.monotonic() - started)
        extract.append(result.extract_s)
        scan.append(result.scan_s)
        print(
            f"run {run + 1}: {result.line()}; extract {result.extract_s:.2f} s, oscap {result.scan_s:.2f} s"
        )
    print(
        f"offline compliance scan of {image.name} ({image.stat().st_size / 2**20:.0f} MiB, "
        f"{args.runs} runs): "
        f"copy-out (qemu-img raw + debugfs rdump) median {statistics.median(extract):.2f} s, "
        f"oscap eval median {statistics.median(scan):.2f} s, total median {statistics.median(total):.2f} s"
    )
    print("in-guest scan: not measured (the testbed guest has no oscap; see the docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
