"""Network install vs CD-ROM install of the testbed: wall time of `boot.mode: pxe` against `kernel`.

    python bench/pxe_install.py [--runs 1]

pxe: QEMU's iPXE ROM -> QEMU's TFTP -> pxelinux -> the installer, which fetches the kickstart and the
install source (inst.repo=http://) from the factory's server; kernel: -kernel/-initrd with the ISO as a
CD-ROM. Runs alternate (kernel, pxe, kernel, pxe...) so host load hits both alike; prints each and medians.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _testbed

from factory.stages.install import install


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    m = _testbed.media()  # built/cached before any clock starts
    walls: dict[str, list[float]] = {"kernel": [], "pxe": []}
    for _ in range(args.runs):
        for mode, times in walls.items():
            build = _testbed.build_dir()
            started = time.monotonic()
            result = install.install(_testbed.spec(m.volume_label, mode), m, build)
            times.append(time.monotonic() - started)
            print(f"{mode}: wall {times[-1]:.1f} s (guest {result.guest_seconds:.1f} s)", flush=True)
            shutil.rmtree(build.path.parent.parent, ignore_errors=True)
    k, p = statistics.median(walls["kernel"]), statistics.median(walls["pxe"])
    print(
        f"median of {args.runs} run(s): ISO (kernel) install {k:.1f} s, PXE install {p:.1f} s ({p / k:.2f}x)"
    )


if __name__ == "__main__":
    main()
