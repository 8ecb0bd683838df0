"""wait_for_ssh reads the serial console while its SSH probes block, so a guest loses no characters.

The guest here behaves as QEMU's UART does on a socket chardev: one write() per character, and a
character the socket does not take within 10 ms is dropped (the kernel's console stops waiting for the
transmitter and the FIFO overflows). Before the console was drained in a thread, a 0.5 s probe against
a port that accepts but stays silent (QEMU's user network while the guest is still down) lost
"ering emergency m" of dracut's last line, and the boot ran into the SSH timeout instead of failing fast.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.errors import VerifyError
from factory.vm import guest
from factory.vm.console import Console

EMERGENCY = "[   18.97] dracut: Entering emergency mode. Exit the shell to continue.\r\n"


class _Guest(threading.Thread):
    """Writes `text` a character at a time, dropping what the socket does not take within 10 ms."""

    def __init__(self, sock: socket.socket, text: str) -> None:
        super().__init__(daemon=True)
        self.sock, self.text, self.lost = sock, text, 0

    def run(self) -> None:
        self.sock.setblocking(False)
        for ch in self.text.encode():
            try:
                self.sock.send(bytes([ch]))
            except BlockingIOError:
                if select.select([], [self.sock], [], 0.01)[1]:
                    self.sock.send(bytes([ch]))
                else:
                    self.lost += 1


class _Vm:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.proc = subprocess.Popen(["sleep", "60"])

    def running(self) -> bool:
        return True


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts and never speaks: every SSH banner probe blocks for its whole timeout."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def test_a_burst_during_a_blocked_probe_loses_nothing_and_fails_fast(
    tmp_path: Path, silent_port: int
) -> None:
    host, guest_end = socket.socketpair()
    transcript = tmp_path / "console.log"
    vm = _Vm(Console(host, transcript))
    boot_log = "".join(
        f"[    {i / 100:.2f}] a boot message that fills the line, number {i}\r\n" for i in range(150)
    )
    writer = _Guest(guest_end, boot_log + EMERGENCY)
    try:
        # The probe starts first (it blocks 0.5 s on the silent port); the burst comes while it blocks.
        threading.Timer(0.1, writer.start).start()
        with pytest.raises(VerifyError, match="emergency shell on the serial console"):
            guest.wait_for_ssh(
                vm,  # type: ignore[arg-type]
                tmp_path / "ssh_config",
                port=silent_port,
                timeout=30,
                transcript=transcript,
                bios_log=tmp_path / "bios.log",
            )
        writer.join(10)
    finally:
        vm.proc.kill()
        vm.proc.wait()
        guest_end.close()
        host.close()
    assert writer.lost == 0
    assert transcript.read_text().replace("\r", "") == (boot_log + EMERGENCY).replace("\r", "")


def test_the_drain_reports_a_closed_console(tmp_path: Path) -> None:
    host, guest_end = socket.socketpair()
    vm = _Vm(Console(host, tmp_path / "console.log"))
    try:
        with guest.draining(vm) as drain:  # type: ignore[arg-type]
            guest_end.sendall(b"last words\r\n")
            guest_end.close()
            text, closed = "", False
            for _ in range(40):
                chunk, closed = drain.take(0.25)
                text += chunk
                if closed:
                    break
            # Closed is reported with (or after) the last text, never before it.
            assert closed
            assert text == "last words\r\n"
            assert drain.take(0) == ("", True)
    finally:
        vm.proc.kill()
        vm.proc.wait()
        host.close()


def test_a_panic_then_the_console_closing_is_named_a_panic(tmp_path: Path, silent_port: int) -> None:
    """QEMU exits right after a panic (-no-reboot): the last lines and the close arrive together, and the
    wait must name the panic, not only "the VM exited"."""
    host, guest_end = socket.socketpair()
    transcript = tmp_path / "console.log"
    vm = _Vm(Console(host, transcript))
    guest_end.sendall(b"[    5.10] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    guest_end.close()
    try:
        with pytest.raises(VerifyError, match="kernel panic"):
            guest.wait_for_ssh(
                vm,  # type: ignore[arg-type]
                tmp_path / "ssh_config",
                port=silent_port,
                timeout=30,
                transcript=transcript,
                bios_log=tmp_path / "bios.log",
            )
    finally:
        vm.proc.kill()
        vm.proc.wait()
        host.close()
