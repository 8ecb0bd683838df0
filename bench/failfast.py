"""Seconds from an injected installer failure to the factory's classified error, per failure kind.

    python bench/failfast.py

The failure's moment is the console transcript's last line before the error (the injected failure is the
last thing the guest prints); the figure is the time from that line's arrival (console.log's mtime) to
install() raising. Goal: < 5 s. (The silent hang is bounded by timeouts.idle by definition: shown apart.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _testbed

from factory import install
from factory.errors import InstallError

CASES = {"crash": {}, "panic": {}, "post": {}, "hang": {"idle": 8}}


def main() -> None:
    m = _testbed.media()
    print(f"{'failure':8} {'kind':16} {'total s':>8} {'after last output s':>20}")
    for fail, timeouts in CASES.items():
        build = _testbed.build_dir()
        spec = _testbed.spec(m.volume_label, "kernel", (f"testbed.fail={fail}",), **timeouts)
        started = time.monotonic()
        try:
            install.install(spec, m, build)
            kind, detected = "NOT DETECTED", time.time()
        except InstallError as exc:
            kind, detected = exc.kind, time.time()
        total = time.monotonic() - started
        last_output = max(
            p.stat().st_mtime for p in (build.path / "console.log", build.path / "anaconda.log")
        )
        print(f"{fail:8} {kind:16} {total:8.1f} {detected - last_output:20.2f}")


if __name__ == "__main__":
    main()
