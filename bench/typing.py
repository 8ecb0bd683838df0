"""Typing the boot line over the serial console: seconds per 60-character line, and wrong characters
that reached the kernel, over N boots of the remastered testbed ISO's isolinux with every core busy.

    python bench/typing.py [BOOTS]        (default 50)

Each boot: isolinux `boot:` prompt -> type_line() -> the kernel prints its command line -> compare.
Goals: 0 wrong characters; < 3 s per line.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _testbed

from factory import media, qemu

# 60 characters, the length the goal names; console=ttyS0 so the kernel prints its command line there.
LINE = "linux console=ttyS0 ignore_loglevel testbed.x=0123456789abcd"


def _busy(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        pass


def one_boot(iso: Path) -> tuple[float, int, int]:
    """(seconds to type, repairs, wrong characters in the kernel's command line)."""
    with tempfile.TemporaryDirectory(prefix="fbt-", dir="/tmp") as tmp:
        d = Path(tmp)
        cfg = qemu.VmConfig(
            serial_socket=d / "c.sock", qmp_socket=d / "q.sock", cdrom=iso, boot_order="d", network=False,
            memory_mib=512,
        )  # fmt: skip
        with qemu.Vm.start(cfg, d / "console.log") as vm:
            vm.console.expect([r"boot: ?"], 60, "the isolinux boot: prompt")
            typed = vm.console.type_line(LINE)
            vm.console.expect([r"Kernel command line: ([^\r\n]*)\r*\n"], 60, "the kernel's command line")
            match = vm.console.match
            got = match.group(1) if match else ""
    want = LINE.split(" ", 1)[1]
    tail = got[-len(want) :]
    wrong = sum(a != b for a, b in zip(tail, want, strict=False)) + abs(len(tail) - len(want))
    return typed.seconds, typed.repairs, wrong


def main() -> None:
    boots = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    iso = media.remaster_for_serial(_testbed.media().iso)
    stop = multiprocessing.Event()
    load = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(multiprocessing.cpu_count())]
    for p in load:
        p.start()
    results = []
    try:
        for i in range(boots):
            results.append(one_boot(iso))
            secs, repairs, wrong = results[-1]
            print(f"boot {i + 1}/{boots}: {secs:.2f} s, repairs {repairs}, wrong {wrong}")
    finally:
        stop.set()
        for p in load:
            p.join(5)
    secs = [r[0] for r in results]
    print(f"\ntyping a {len(LINE)}-character line, {boots} boots, {multiprocessing.cpu_count()} cores busy:")
    print(f"  seconds per line: median {statistics.median(secs):.2f}, max {max(secs):.2f}  (goal < 3 s)")
    print(f"  repairs (echo mismatches fixed): {sum(r[1] for r in results)}")
    print(f"  wrong characters in the kernel command line: {sum(r[2] for r in results)}  (goal 0)")


if __name__ == "__main__":
    main()
