"""Benchmark: publishing to vSphere (OVA, streamOptimized VMDK over NFC) and OpenStack (qcow2 to Glance),
against the local stand-ins the tests use (vcsim built from Debian's govmomi; Glance 33 in its own venv).

    python bench/publish_targets.py [--size-gib 4] [--data-mib 256]

Makes a sparse raw disk of --size-gib holding --data-mib of random data (the rest zeros, like a fresh
install's free space), exports it (qcow2, OVA) with the factory's export stage, then publishes it through
the target interface behind the gate. Prints, per target, bytes sent / image (virtual) bytes, and the wall
time of publish(). The stand-ins discard or store locally: the times are the client's side, not a vCenter's.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory.targets import runner  # noqa: E402
from factory.targets.base import TargetContext, exported  # noqa: E402
from tests.targets import glance_service, vcsim_service  # noqa: E402
from tests.targets.conftest import CACHE, gated_build, write_clouds, write_spec  # noqa: E402

MIB = 1024**2


def make_disk(path: Path, size: int, data: int, chunk: int = 4 * MIB, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("wb") as fh:
        fh.truncate(size)
        for slot in rng.sample(range(size // chunk), data // chunk):
            fh.seek(slot * chunk)
            fh.write(os.urandom(chunk))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--data-mib", type=int, default=256)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-targets-") as tmp:
        work = Path(tmp)
        t0 = time.monotonic()
        vcsim = vcsim_service.start(vcsim_service.build(CACHE), work)
        glance = glance_service.start(CACHE, work / "glance")
        print(f"stand-ins ready in {time.monotonic() - t0:.1f} s (vcsim + Glance, venv cached)")
        try:
            os.environ.update(
                VSPHERE_USER=vcsim.username,
                VSPHERE_PASSWORD=vcsim.password,
                OS_CLIENT_CONFIG_FILE=str(write_clouds(work / "clouds.yaml", {"bench": glance.url})),
            )
            spec = write_spec(
                work / "spec",
                name="bench",
                export=["qcow2", "ova"],
                vsphere={
                    "url": vcsim.url,
                    "datacenter": "DC0",
                    "cluster": "DC0_C0",
                    "datastore": "LocalDS_0",
                    "network": "VM Network",
                },
                openstack={"clouds": [{"cloud": "bench"}]},
            )
            disk = work / "disk.raw"
            size = a.size_gib * 1024 * MIB
            make_disk(disk, size, a.data_mib * MIB)
            t0 = time.monotonic()
            build = gated_build(spec, work / "build", disk)
            print(
                f"export qcow2 + ova of {a.size_gib} GiB ({a.data_mib} MiB data): "
                f"{time.monotonic() - t0:.1f} s"
            )
            sizes = {x.format: x.size for x in exported(build)}
            ctx = TargetContext(spec=spec, build=build)
            for key in ("vsphere", "openstack"):
                t0 = time.monotonic()
                pub = runner.publish(ctx, runner.select(ctx, [key]))[key]
                wall = time.monotonic() - t0
                sent = int(pub.stats["bytes_sent"])
                fmt = "ova" if key == "vsphere" else "qcow2"
                print(
                    f"{key:9s} {fmt:5s} file {sizes[fmt] / MIB:8.1f} MiB  sent {sent / MIB:8.1f} MiB  "
                    f"sent/image bytes {sent / size:.4f}  sent/data bytes {sent / (a.data_mib * MIB):.3f}  "
                    f"wall {wall:6.2f} s  ({sent / MIB / max(wall, 1e-9):.0f} MiB/s)"
                )
            print(f"(vcsim received {sum(vcsim.nfc_bytes()) / MIB:.1f} MiB over NFC)")
        finally:
            vcsim.stop()
            glance.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
