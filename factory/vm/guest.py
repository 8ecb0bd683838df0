"""Boot an installed image headless with SSH forwarded to 127.0.0.1, and wait until the build key logs in.

Shared by the verify stage (on a throw-away overlay) and the seal stage (on a writable copy): both need the
same VM shape, the same fail-fast wait for SSH and the same console draining. A guest that cannot get to
SSH fails fast: SeaBIOS finding no bootable disk, a kernel panic, an emergency shell or the VM exiting end
the wait at once with a VerifyError (exit 6) carrying the serial transcript.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.core.record import atomic_write_text
from factory.errors import ToolError, VerifyError
from factory.host import tools
from factory.spec import Spec
from factory.vm import qemu
from factory.vm.sshkey import BuildKey

# Text on the serial console (or SeaBIOS's debug log) that means SSH will never come: kind -> markers.
BOOT_FAILURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "no bootable disk",
        ("No bootable device", "Boot failed: not a bootable disk", "Boot failed: could not read"),
    ),
    ("kernel panic", ("Kernel panic",)),
    ("emergency shell", ("emergency mode", "Give root password for maintenance", "dracut:/#")),
)


# After a login prompt the guest has finished booting: sshd gets this long to answer before we give up,
# so an image without sshd fails in about a minute instead of waiting out spec.timeouts.ssh.
LOGIN_GRACE_S = 60.0


LOGIN_PROMPT_RE = re.compile(r"(?m)^\S+ login: ?$")


SSH_PROBE_INTERVAL_S = 1.0


# sshd answers but refuses the key this many times in a row: the image will not let us in.
MAX_LOGIN_FAILURES = 10


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (QEMU binds it a moment later; a lost race shows as a QEMU error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ssh_config_text(key: BuildKey, port: int, control_path: Path | None = None, user: str = "root") -> str:
    """An ssh_config for the guest: only the build key (or a target boot's key), no host key bookkeeping."""
    lines = [
        "Host 127.0.0.1",
        "  HostName 127.0.0.1",
        f"  User {user}",
        f"  Port {port}",
        f"  IdentityFile {key.private}",
        "  IdentitiesOnly yes",
        # The guest's host keys are new on every install (and again after sealing): nothing to pin.
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  BatchMode yes",
        "  ConnectTimeout 10",
    ]
    if control_path is not None:
        # One SSH connection for the whole suite: under TCG every key exchange costs the guest time.
        lines += [f"  ControlPath {control_path}"]
    return "\n".join(lines) + "\n"


def write_ssh_config(
    path: Path, key: BuildKey, port: int, control_path: Path | None = None, user: str = "root"
) -> Path:
    atomic_write_text(path, ssh_config_text(key, port, control_path, user), mode=0o600)
    return path


def boot_failure(text: str) -> str | None:
    """The kind of boot failure `text` shows (e.g. 'kernel panic'), or None."""
    for kind, markers in BOOT_FAILURES:
        if any(m in text for m in markers):
            return kind
    return None


def ssh_argv(ssh_config: Path, *command: str) -> list[str]:
    return ["ssh", "-F", str(ssh_config), "127.0.0.1", *command]


def _image_format(image: Path) -> str:
    info = json.loads(tools.run(["qemu-img", "info", "--output=json", image], timeout=60).stdout)
    fmt: str = info["format"]
    return fmt


@contextlib.contextmanager
def overlay(
    image: Path, path: Path, prepare: Callable[[Path], None] | None = None, size: int | None = None
) -> Iterator[Path]:
    """A qcow2 overlay backed by `image` (which stays untouched), deleted when the block ends.

    `prepare`, when given, is called with the new overlay before it is handed out (verify's offline access
    key goes in there: into the overlay, never into `image`). `size` (bytes) makes the overlay's disk
    bigger than the image, as a cloud instance's disk is."""
    path.unlink(missing_ok=True)
    fmt = _image_format(image)
    argv: list[str | Path] = [
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        fmt,
        "-b",
        image.resolve(),
        path,
    ]
    if size is not None:
        argv.append(str(size))
    tools.run(argv, timeout=60)
    try:
        if prepare is not None:
            prepare(path)
        yield path
    finally:
        path.unlink(missing_ok=True)


def vm_config(
    spec: Spec,
    disk: Path,
    port: int,
    sockets: Path,
    bios_log: Path,
    *,
    accel: str | None = None,
    target: TargetMachine | None = None,
) -> qemu.VmConfig:
    """Boot `disk` (qcow2, written to) headless with SSH forwarded from 127.0.0.1:`port`; `target`
    changes the machine into one a target platform presents (verify's target boots)."""
    from factory.vm import accel as accel_mod

    t = target or TargetMachine()
    return qemu.VmConfig(
        serial_socket=sockets / "serial.sock",
        qmp_socket=sockets / "qmp.sock",
        memory_mib=spec.vm.memory_mib,
        cpus=spec.vm.cpus,
        accel="kvm" if (accel or accel_mod.resolve(spec.vm.accel)) == "kvm" else "tcg",
        firmware=t.firmware or spec.vm.firmware.value,
        disks=(qemu.Disk(disk, "qcow2", interface=t.disk_interface),),
        cdrom=t.cdrom,
        boot_order="c",
        hostfwd=(qemu.HostFwd(port, 22),),
        mac=t.mac,
        netdev_options=t.netdev_options,
        no_reboot=True,
        name=f"verify-{spec.name}" + (f"-{t.name}" if t.name else ""),
        extra_args=(
            *t.extra_args,
            # No bootable disk: SeaBIOS "reboots" at once, which -no-reboot turns into QEMU exiting,
            # instead of retrying every 60 s until the SSH timeout.
            "-boot",
            "strict=on,reboot-timeout=0",
            # SeaBIOS prints nothing on the serial port; its debug port says why a disk did not boot.
            "-chardev",
            f"file,id=biosdbg,path={bios_log}",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=biosdbg",
        ),
    )


@dataclass(frozen=True)
class TargetMachine:
    """How a target boot's machine differs from the build's (all defaults: the build's own machine)."""

    name: str = ""
    disk_interface: Literal["virtio", "ide", "nvme"] = "virtio"
    mac: str | None = None
    netdev_options: str = ""
    firmware: Literal["bios", "uefi"] | None = None
    # A metadata medium (config drive, OVF environment) as the CD-ROM.
    cdrom: Path | None = None
    # -smbios ... as the platform's firmware reports itself.
    extra_args: tuple[str, ...] = ()


def fail(message: str, transcript: Path, *extra: Path) -> VerifyError:
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(transcript.read_text(errors="replace").strip().splitlines()[-15:])
    return VerifyError(message, artifacts=(transcript, *extra), details=tail)


def ssh_banner(port: int, timeout: float = 0.5) -> bool:
    """Does sshd answer on 127.0.0.1:port with its banner? A short, in-process check: QEMU's user network
    accepts the connection even while the guest is down, so only the banner says sshd is there."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _ssh_login(ssh_config: Path) -> bool:
    try:
        return tools.run(ssh_argv(ssh_config, "true"), timeout=30, check=False).returncode == 0
    except ToolError:
        return False  # a guest too busy to finish the key exchange in 30 s is not ready yet


def wait_for_ssh(
    vm: qemu.Vm,
    ssh_config: Path,
    *,
    port: int,
    timeout: float,
    transcript: Path,
    bios_log: Path,
    max_login_failures: int = MAX_LOGIN_FAILURES,
) -> float:
    """Wait until `ssh true` works; fail at once on a boot failure. Returns the seconds waited.

    The console is read in a thread the whole time (ConsoleDrain), never between probes: an SSH probe can
    block for seconds, and a guest whose serial output is not read meanwhile loses characters (below).
    """
    started = time.monotonic()
    deadline = started + timeout
    seen = ""
    login_at: float | None = None
    rejected = 0
    next_probe = started
    with draining(vm) as drain:
        while True:
            chunk, closed = drain.take(0.25)
            if chunk:
                # Keep enough to match a marker split across two reads.
                seen = (seen + chunk)[-8192:]
            kind = boot_failure(seen)
            if kind is None and (closed or not vm.running()):
                with contextlib.suppress(OSError):
                    kind = boot_failure(bios_log.read_text(errors="replace"))
                code = vm.proc.poll()
                raise fail(
                    f"the VM exited before SSH came up ({kind or f'QEMU exit status {code}'})",
                    transcript,
                    bios_log,
                )
            if kind is not None:
                raise fail(f"the image did not boot to SSH: {kind} on the serial console", transcript)
            now = time.monotonic()
            if login_at is None and LOGIN_PROMPT_RE.search(seen):
                login_at = now
            if now >= next_probe:
                if ssh_banner(port):
                    if _ssh_login(ssh_config):
                        return time.monotonic() - started
                    rejected += 1
                    if rejected >= max_login_failures:
                        raise fail(
                            f"sshd answers but the login with the key is refused ({rejected} attempts): "
                            "is the key's %post in the kickstart (or did cloud-init not take the target's "
                            "key?), and login by key allowed?",
                            transcript,
                        )
                next_probe = time.monotonic() + SSH_PROBE_INTERVAL_S
            if login_at is not None and now - login_at > LOGIN_GRACE_S and rejected:
                raise fail(
                    f"the guest finished booting (login prompt) but sshd refused the key for "
                    f"{LOGIN_GRACE_S:.0f} s ({rejected} attempts)",
                    transcript,
                )
            if login_at is not None and now - login_at > LOGIN_GRACE_S:
                raise fail(
                    f"the guest reached a login prompt but SSH on 127.0.0.1 did not answer within "
                    f"{LOGIN_GRACE_S:.0f} s (is sshd installed and enabled?)",
                    transcript,
                )
            if now > deadline:
                raise fail(f"SSH did not answer within spec.timeouts.ssh = {timeout:.0f} s", transcript)


class ConsoleDrain:
    """Reads a VM's serial console in a thread (into its transcript) for as long as it runs.

    Why a thread: QEMU writes a socket chardev one character per write(), and a unix socket holds only a
    few hundred such one-byte writes. Unread for a second (an SSH probe, the suite), QEMU's UART stops
    emptying; the guest kernel's console waits a few milliseconds per character, then writes anyway and
    the UART's FIFO overflows: characters are lost ("Entering emergency mode" arrived as "Entode.") and
    a guest that prints a lot stalls on its own printk."""

    def __init__(self, vm: qemu.Vm) -> None:
        self._vm = vm
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._pending: list[str] = []
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="console-drain", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            chunk = self._vm.console.read(0.25)
            with self._lock:
                if chunk is None:
                    self.closed = True
                elif chunk:
                    self._pending.append(chunk)
                self._lock.notify_all()
            if chunk is None:
                return

    def take(self, timeout: float) -> tuple[str, bool]:
        """What arrived since the last take (waiting up to `timeout` seconds for something), and whether the
        console has closed. Both under one lock: a panic's last lines and the close that follows them must
        not be seen in the wrong order (closed, but the text still pending) or the panic goes unnamed."""
        with self._lock:
            if not self._pending and not self.closed:
                self._lock.wait(timeout)
            text = "".join(self._pending)
            self._pending.clear()
            return text, self.closed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def draining(vm: qemu.Vm) -> Iterator[ConsoleDrain]:
    """Keep reading the serial console (into the transcript) in a thread while the block runs."""
    drain = ConsoleDrain(vm)
    drain.start()
    try:
        yield drain
    finally:
        drain.stop()
