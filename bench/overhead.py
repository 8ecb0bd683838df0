"""Factory overhead of one testbed install: total wall time minus the time the guest ran.

    python bench/overhead.py [kernel|serial-prompt]

Overhead covers kernel/initrd extraction, the build key, the kickstart, qemu-img create, starting QEMU,
typing (serial-prompt) and the disk rename. Goal: < 5 % of the total.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _testbed

from factory.stages.install import install
from factory.stages.media import media


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "kernel"
    m = _testbed.media()  # built/cached before the clock starts: media is its own stage
    build = _testbed.build_dir()
    started = time.monotonic()
    spec = _testbed.spec(m.volume_label, mode)
    result = install.install(spec, media.for_boot(spec, m), build)
    wall = time.monotonic() - started
    overhead = wall - result.guest_seconds
    print(f"mode {mode}: wall {wall:.2f} s, guest ran {result.guest_seconds:.2f} s, "
          f"overhead {overhead:.2f} s = {100 * overhead / wall:.1f} %  (goal < 5 %)")  # fmt: skip
    print(f"packages {result.packages}, accel {result.accel}, disk {result.disk}")


if __name__ == "__main__":
    main()
