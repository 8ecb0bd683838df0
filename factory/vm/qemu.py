"""QEMU as data, and the one place a VM is started and stopped.

`VmConfig` describes a VM; `command(cfg)` turns it into an argv (pure, unit-tested); `Vm.start(cfg, ...)`
runs it headless with the serial console on a unix socket (so `factory console BUILD` can attach later),
QMP on another unix socket, and always cleans up (`with Vm.start(...) as vm:` kills QEMU on any exit).

Why a socket rather than `-serial stdio`: a VM kept paused for inspection (`keep_on_error`) must outlive the
factory and still be reachable; a stdio console dies with its reader, a socket chardev accepts a new client.
The serial chardev uses `wait=on`, so QEMU does not start the guest before we are connected and no early
byte of the console is lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn

from factory.errors import ToolError, UsageError
from factory.host import tools
from factory.vm.console import Console

QEMU = "qemu-system-x86_64"
OVMF = Path("/usr/share/ovmf/OVMF.fd")
ANACONDA_LOG_PORT = "org.fedoraproject.anaconda.log.0"
# sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Disk:
    path: Path
    format: Literal["qcow2", "raw", "vmdk", "vpc"] = "qcow2"
    # snapshot=True: writes go to a throw-away overlay (boot an image without changing it).
    snapshot: bool = False
    readonly: bool = False
    # nvme: the disk as a Nitro instance (the aws boot profile) presents its EBS volumes.
    interface: Literal["virtio", "ide", "nvme"] = "virtio"


@dataclass(frozen=True)
class HostFwd:
    """A TCP port forward from 127.0.0.1:host_port on the host to guest_port in the guest."""

    host_port: int
    guest_port: int


@dataclass(frozen=True)
class VmConfig:
    """Everything that decides a QEMU command line. Paths are used as given (make them absolute)."""

    serial_socket: Path
    qmp_socket: Path
    memory_mib: int = 1024
    cpus: int = 1
    accel: Literal["kvm", "tcg"] = "tcg"
    firmware: Literal["bios", "uefi"] = "bios"
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    disks: tuple[Disk, ...] = ()
    cdrom: Path | None = None
    # QEMU's -boot order letters: "c" disk, "d" cdrom, "n" network; None = firmware default.
    boot_order: str | None = None
    network: bool = True
    # Network boot: QEMU's built-in TFTP server serves this folder, and DHCP names `bootfile` in it.
    tftp_root: Path | None = None
    bootfile: str | None = None
    hostfwd: tuple[HostFwd, ...] = ()
    # The NIC's MAC (None: QEMU's default 52:54:00:12:34:56, the build's), and more `-netdev user`
    # options (a boot profile's network and guestfwd to its metadata server).
    mac: str | None = None
    netdev_options: str = ""
    # The installer's log port (virtio-serial, org.fedoraproject.anaconda.log.0) written to this file.
    anaconda_log: Path | None = None
    # -no-reboot: a guest reboot ends QEMU instead of booting again.
    no_reboot: bool = True
    name: str = "factory"
    ovmf: Path = OVMF
    extra_args: tuple[str, ...] = field(default=())


def _opt(value: Path | str) -> str:
    # QEMU option values separate on ','; a literal comma in a path is written ',,'.
    return str(value).replace(",", ",,")


def command(cfg: VmConfig, qemu: str = QEMU) -> list[str]:
    """The exact QEMU argv for `cfg` (pure: no file is touched)."""
    if (cfg.initrd is not None or cfg.append is not None) and cfg.kernel is None:
        raise UsageError("qemu: initrd/append given without a kernel")
    argv = [qemu, "-name", cfg.name, "-nodefaults", "-display", "none", "-machine", "pc"]
    argv += ["-accel", cfg.accel, "-cpu", "host" if cfg.accel == "kvm" else "max"]
    argv += ["-m", str(cfg.memory_mib), "-smp", str(cfg.cpus)]
    if cfg.firmware == "uefi":
        argv += ["-bios", str(cfg.ovmf)]
    if cfg.kernel is not None:
        argv += ["-kernel", str(cfg.kernel)]
        if cfg.initrd is not None:
            argv += ["-initrd", str(cfg.initrd)]
        if cfg.append is not None:
            argv += ["-append", cfg.append]
    for i, disk in enumerate(cfg.disks):
        opts = [f"file={_opt(disk.path)}", f"format={disk.format}"]
        # An NVMe disk is a -device backed by an if=none drive (QEMU has no if=nvme).
        opts += (
            [f"if=none,id=nvme{i}"] if disk.interface == "nvme" else [f"if={disk.interface}", f"index={i}"]
        )
        if disk.snapshot:
            opts.append("snapshot=on")
        if disk.readonly:
            opts.append("readonly=on")
        argv += ["-drive", ",".join(opts)]
        if disk.interface == "nvme":
            argv += ["-device", f"nvme,drive=nvme{i},serial=vol{i:017d}"]
    if cfg.cdrom is not None:
        # index=2: the secondary IDE master, so /dev/sr0 whatever the virtio disks are.
        argv += ["-drive", f"file={_opt(cfg.cdrom)},format=raw,if=ide,index=2,media=cdrom,readonly=on"]
    if cfg.boot_order is not None:
        argv += ["-boot", f"order={cfg.boot_order}"]
    if cfg.network:
        netdev = "user,id=net0"
        if cfg.tftp_root is not None:
            netdev += f",tftp={_opt(cfg.tftp_root)}"
            if cfg.bootfile is not None:
                netdev += f",bootfile={_opt(cfg.bootfile)}"
        for fwd in cfg.hostfwd:
            # Bound to 127.0.0.1 only: nothing outside this host reaches the guest.
            netdev += f",hostfwd=tcp:127.0.0.1:{fwd.host_port}-:{fwd.guest_port}"
        if cfg.netdev_options:
            netdev += f",{cfg.netdev_options}"
        nic = "virtio-net-pci,netdev=net0" + (f",mac={cfg.mac}" if cfg.mac else "")
        argv += ["-netdev", netdev, "-device", nic]
    argv += ["-chardev", f"socket,id=ser0,path={_opt(cfg.serial_socket)},server=on,wait=on"]
    argv += ["-serial", "chardev:ser0"]
    if cfg.anaconda_log is not None:
        argv += ["-device", "virtio-serial-pci,id=vser0"]
        argv += ["-chardev", f"file,id=anacondalog,path={_opt(cfg.anaconda_log)}"]
        argv += ["-device", f"virtserialport,bus=vser0.0,chardev=anacondalog,name={ANACONDA_LOG_PORT}"]
    argv += ["-qmp", f"unix:{_opt(cfg.qmp_socket)},server=on,wait=off"]
    if cfg.no_reboot:
        argv.append("-no-reboot")
    argv += list(cfg.extra_args)
    return argv


def qemu_version() -> str:
    """'QEMU emulator version 7.2.22 (...)' or 'missing'."""
    return tools.version(QEMU)


class QmpError(ToolError):
    """QMP answered with an error, or did not answer in time."""


class Qmp:
    """A small QMP client: JSON lines over a unix socket, `qmp_capabilities` first, events skipped."""

    def __init__(self, path: Path, timeout: float = 10.0, *, sock: socket.socket | None = None) -> None:
        self._sock = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._timeout = timeout
        self._buf = b""
        # Asynchronous events (SHUTDOWN, STOP, RESET...) seen so far, oldest first; see `events()`.
        self.pending_events: list[dict[str, Any]] = []
        try:
            if sock is None:
                self._sock.connect(str(path))
            self._read_message()  # the greeting: {"QMP": {...}}
            self.execute("qmp_capabilities")
        except BaseException:
            self._sock.close()
            raise

    def _read_message(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise QmpError(f"QMP did not answer within {self._timeout:.0f} s") from None
            if not chunk:
                raise QmpError("QMP connection closed by QEMU")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, cmd: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": cmd}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read_message()
            if "event" in message:
                self.pending_events.append(message)  # not an answer: keep it for events()
                continue
            if "error" in message:
                err = message["error"]
                raise QmpError(f"QMP {cmd} failed: {err.get('class')}: {err.get('desc')}")
            return message.get("return")

    def events(self) -> list[dict[str, Any]]:
        """Events received so far without waiting (e.g. SHUTDOWN with its reason), then forget them."""
        self._sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self._sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if not chunk:
                    break  # QEMU exited; what it sent before is in the buffer
                self._buf += chunk
        finally:
            self._sock.settimeout(self._timeout)
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            message = json.loads(line)
            if "event" in message:
                self.pending_events.append(message)
        events, self.pending_events = self.pending_events, []
        return events

    def close(self) -> None:
        self._sock.close()


def _pdeathsig() -> None:
    # Runs in the child before exec: the kernel kills QEMU if the factory dies (even by SIGKILL).
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise ToolError(f"qemu exited with status {proc.returncode} before creating its {what} socket")
        if time.monotonic() > deadline:
            raise ToolError(f"qemu did not create its {what} socket {path} within {timeout:.0f} s")
        time.sleep(0.02)


def _connect(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> socket.socket:
    """Connect to one of QEMU's unix sockets. The file appears at bind(), a moment before listen():
    a connection refused in that window is retried, not reported."""
    deadline = time.monotonic() + timeout
    while True:
        _wait_for_socket(path, proc, max(0.0, deadline - time.monotonic()), what)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ToolError(f"qemu did not accept a connection on its {what} socket {path}") from None
            time.sleep(0.02)


class Vm:
    """One running QEMU. Use as a context manager; `kill()` is idempotent and always safe."""

    def __init__(self, cfg: VmConfig, proc: subprocess.Popen[bytes], console: Console, stderr: Path) -> None:
        self.cfg = cfg
        self.proc = proc
        self.console = console
        self.stderr_path = stderr
        self.started = time.monotonic()
        self.ended: float | None = None
        self._qmp: Qmp | None = None
        self._last_shutdown: str | None = None
        self.detached = False

    @classmethod
    def start(
        cls,
        cfg: VmConfig,
        transcript: Path,
        *,
        stderr: Path | None = None,
        survive_parent: bool = False,
        start_timeout: float = 30.0,
    ) -> Vm:
        """Start QEMU, connect the serial console (teeing it to `transcript`) and return the running VM.

        `survive_parent=True` lets QEMU outlive this process (a VM kept paused for inspection); otherwise
        the kernel kills QEMU when the factory dies.
        """
        for sock in (cfg.serial_socket, cfg.qmp_socket):
            if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
                raise UsageError(
                    f"socket path too long for a unix socket ({len(os.fsencode(sock))} > {MAX_SOCKET_PATH} "
                    f"bytes): {sock}; use a shorter build directory"
                )
            sock.unlink(missing_ok=True)
        argv = command(cfg, str(tools.which(QEMU)))
        stderr = stderr or transcript.with_name("qemu.stderr")
        with stderr.open("wb") as err:
            # A new session: Ctrl-C reaches the factory only, which then stops QEMU in order.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                preexec_fn=None if survive_parent else _pdeathsig,  # noqa: PLW1509 - prctl only
            )
        try:
            serial = _connect(cfg.serial_socket, proc, start_timeout, "serial console")
            console = Console(serial, transcript)
        except BaseException:
            died_on_its_own = proc.poll() is not None
            _kill(proc)
            if died_on_its_own:
                _raise_with_stderr(proc, stderr)
            raise
        return cls(cfg, proc, console, stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def qmp(self, cmd: str, **arguments: Any) -> Any:
        """Run one QMP command (e.g. 'stop', 'cont', 'query-status', 'quit') and return its answer."""
        self.connect_qmp()
        assert self._qmp is not None
        return self._qmp.execute(cmd, **arguments)

    def connect_qmp(self) -> None:
        """Connect QMP now, so that events (SHUTDOWN and its reason) are received from here on."""
        if self._qmp is None:
            sock = _connect(self.cfg.qmp_socket, self.proc, 10, "QMP")
            self._qmp = Qmp(self.cfg.qmp_socket, sock=sock)

    def events(self) -> list[dict[str, Any]]:
        """QMP events received since the last call (needs connect_qmp() first; [] if not connected)."""
        return self._qmp.events() if self._qmp is not None else []

    def shutdown_reason(self) -> str | None:
        """The reason of the last SHUTDOWN event ('guest-shutdown' = powered off, 'guest-reset' = reboot
        under -no-reboot, 'guest-panic', 'host-signal'...), or None if none was seen."""
        reason: str | None = None
        for event in self.events():
            if event.get("event") == "SHUTDOWN":
                reason = str(event.get("data", {}).get("reason"))
        if reason is not None:
            self._last_shutdown = reason
        return reason or self._last_shutdown

    def wait_exit(self, timeout: float) -> int:
        """QEMU's exit status; ToolError if it is still running after `timeout` seconds."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"qemu (pid {self.pid}) did not exit within {timeout:.0f} s") from None
        self._mark_ended()
        return code

    def _mark_ended(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()

    @property
    def run_seconds(self) -> float:
        """How long the guest ran (until QEMU exited, or until now)."""
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    def pause_and_detach(self) -> None:
        """Stop the guest's CPUs and leave QEMU running for inspection (the caller prints how to attach)."""
        self.qmp("stop")
        self._mark_ended()
        self.detached = True
        self._close_channels()

    def _close_channels(self) -> None:
        self.console.close()
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None

    def kill(self) -> None:
        """Stop QEMU now (SIGTERM, then SIGKILL), close the console and remove the sockets."""
        self._close_channels()
        if self.detached:
            return
        _kill(self.proc)
        self._mark_ended()
        for sock in (self.cfg.serial_socket, self.cfg.qmp_socket):
            sock.unlink(missing_ok=True)

    def __enter__(self) -> Vm:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


def _raise_with_stderr(proc: subprocess.Popen[bytes], stderr: Path) -> NoReturn:
    """If QEMU died on its own, raise a ToolError quoting its stderr instead of a bare socket error."""
    tail = " | ".join(stderr.read_text(errors="replace").strip().splitlines()[-3:])
    raise ToolError(f"qemu exited with status {proc.returncode}: {tail or 'no error output'}") from None


@contextlib.contextmanager
def running(cfg: VmConfig, transcript: Path) -> Iterator[Vm]:
    """`with running(cfg, transcript) as vm:` — the VM is killed on any exit from the block."""
    vm = Vm.start(cfg, transcript)
    try:
        yield vm
    finally:
        vm.kill()


def qemu_stderr_tail(vm: Vm, lines: int = 3) -> Sequence[str]:
    try:
        return vm.stderr_path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ()
