"""Benchmark: seconds from `verify` start to SSH ready and to the suite finished, on the testbed (TCG),
then each target boot's seconds (start -> suite done) and the whole verify's.

    python bench/verify.py [--runs N] [--build BUILD_DIR] [--boots aws,openstack,vsphere,metal-bios]

Without --build it installs the testbed first (not timed). Goals: SSH ready < 30 s, suite < 60 s.
`--boots ""` measures today's boot only (the demo's verify: specs/testbed.yaml runs no target boot).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vm"))

from fixtures_verify import install_testbed, kickstart_with, make_testbed_spec

from factory.core.record import BuildDir
from factory.stages.verify.verify import verify
from factory.vm import sshkey


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--build", type=Path, help="an installed testbed build (else one is installed)")
    parser.add_argument(
        "--boots", default="aws,openstack,vsphere,metal-bios", help="target boots, comma-separated"
    )
    parser.add_argument("--parallel", type=int, default=2, help="target boots at once (default: 2 cores)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    boots = tuple(b for b in args.boots.split(",") if b)
    # Every target boot is a first boot of cloud-init: the testbed then installs its cloud layer.
    cloud = bool(boots)
    if args.build:
        build = BuildDir.open(args.build)
        spec, disk = make_testbed_spec(work, cloud_init=cloud), build.path / "disk.qcow2"
    else:
        started = time.monotonic()
        ks = kickstart_with(work / "ks", cloud_init=True) if cloud else None
        installed = install_testbed(work, "testbed", ks, cloud_init=cloud)
        spec, build, disk = installed.spec, installed.build, installed.disk
        print(f"install (not part of the figures): {time.monotonic() - started:.1f} s")
    ssh, suite = [], []
    per_boot: dict[str, list[float]] = {b: [] for b in boots}
    whole: list[float] = []
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        result = verify(spec, disk, build, key=sshkey.load(build.key), boots=boots, parallel=args.parallel)
        whole.append(time.monotonic() - started)
        ssh.append(result.ssh_ready_s)
        # "Suite finished" counted from verify's start: boot + SSH wait + the suite (today's boot).
        suite.append(result.default_s)
        for b in result.boots:
            per_boot[b.boot].append(b.total_s)
            print(
                f"  {b.boot}: {b.outcome} in {b.total_s:.1f} s (SSH {b.ssh_ready_s:.1f} s, suite "
                f"{b.suite_s:.1f} s) {b.reason}"
            )
        s = result.summary
        print(
            f"run {run}: SSH ready {result.ssh_ready_s:.1f} s, suite {result.suite_s:.1f} s, "
            f"today's boot start -> suite done {suite[-1]:.1f} s, whole verify {whole[-1]:.1f} s "
            f"({s.passed} passed, {s.failed} failed, "
            f"{s.skipped} skipped){'' if result.passed else '  FAILED'}"
        )
    print(
        f"median over {args.runs}: SSH ready {statistics.median(ssh):.1f} s (goal < 30), "
        f"suite finished {statistics.median(suite):.1f} s (goal < 60)"
        + "".join(f", {b} {statistics.median(v):.1f} s" for b, v in per_boot.items() if v)
        + f", whole verify {statistics.median(whole):.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
