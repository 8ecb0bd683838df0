"""Seconds from an injected installer failure to the factory's classified error, per failure kind.

    python bench/failfast.py [CASE ...]

Each case boots the testbed with `testbed.fail=CASE` (the real EL 7.2 console text of that failure, see
docs/testbed.md) or, for ksfetch, a wrong kickstart path (the testbed prints dracut's curl error and
`Warning: failed to fetch kickstart from URL`). Two figures:
- line -> exit: from the moment the monitor read the failure's line off the serial console (its first
  FailureEvent) to install() raising. Goal: < 5 s. It is the figure for failures whose output keeps flowing
  (hub redraws, the retry loop), where "the last output" never comes.
- after last output: from console.log's / anaconda.log's last write (the guest's last output) to the raise.
The silent hang has no failure line: it is bounded by timeouts.idle by definition (shown apart).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _testbed

from factory.errors import InstallError
from factory.stages.install import install, monitor
from factory.stages.media import media

# case -> (kernel arguments, timeouts, kickstart path the guest is told)
CASES: dict[str, tuple[tuple[str, ...], dict[str, int], str | None]] = {
    "crash": (("testbed.fail=crash",), {}, None),
    "panic": (("testbed.fail=panic",), {}, None),
    "post": (("testbed.fail=post",), {}, None),
    "cmdline": (("testbed.fail=cmdline",), {}, None),
    "hub": (("testbed.fail=hub",), {"idle": 8}, None),
    "retry": (("testbed.fail=retry",), {"idle": 8}, None),
    "frames": (("testbed.fail=frames",), {}, None),
    "dracut": (("testbed.fail=dracut",), {}, None),
    "oops": (("testbed.fail=oops",), {}, None),
    "ksfetch": ((), {}, "/wrongtoken/ks.cfg"),
    "hang": (("testbed.fail=hang",), {"idle": 8}, None),
}


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    m = _testbed.media()
    print(f"{'failure':8} {'kind':22} {'total s':>8} {'line -> exit s':>15} {'after last output s':>20}")
    for name in names or list(CASES):
        args, timeouts, ks_path = CASES[name]
        build = _testbed.build_dir()
        spec = _testbed.spec(m.volume_label, "kernel", args, **timeouts)
        seen: list[float] = []

        def progress(event: monitor.Event, seen: list[float] = seen) -> None:
            if isinstance(event, monitor.FailureEvent) and not seen:
                seen.append(time.monotonic())

        started = time.monotonic()
        try:
            install.install(
                spec, media.for_boot(spec, m), build, progress=progress, ks_path_for_guest=ks_path
            )
            kind, message = "NOT DETECTED", ""
        except InstallError as exc:
            kind, message = exc.kind, exc.message
        ended, detected = time.monotonic(), time.time()
        last_output = max(
            p.stat().st_mtime for p in (build.path / "console.log", build.path / "anaconda.log") if p.exists()
        )
        line = f"{ended - seen[0]:15.2f}" if seen else f"{'n/a':>15}"
        print(f"{name:8} {kind:22} {ended - started:8.1f} {line} {detected - last_output:20.2f}")
        print(f"         {message}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
