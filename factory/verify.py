"""The verify stage: boot the image on a throw-away overlay, log in with the build key, run tests/images.

    verify(spec, image, build, key=key) -> VerifyResult

The image under test is never written: QEMU writes to `verify/overlay.qcow2` (backed by the image), which
is deleted afterwards, and the image's sha256 is compared before and after. The acceptance suite runs as
`python -m pytest tests/images` in a subprocess with testinfra's SSH backend, so its results are plain
JUnit XML and a failing check can never crash the factory. A guest that cannot get to SSH fails fast:
SeaBIOS finding no bootable disk, a kernel panic, an emergency shell or the VM exiting end the wait at
once with a VerifyError (exit 6) carrying the serial transcript.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import factory
from factory import checks, digest, qemu, tools
from factory.errors import FactoryError, ToolError, VerifyError
from factory.record import BuildDir, atomic_write_text
from factory.spec import Spec
from factory.sshkey import BuildKey

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
POWEROFF_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Summary:
    passed: int
    failed: int
    skipped: int
    errors: int


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    image_sha256: str
    junit: Path
    summary: Summary
    ssh_ready_s: float
    suite_s: float
    transcript: Path


def suite_dir() -> Path:
    """tests/images of the source tree the factory runs from (an editable install or a checkout)."""
    return Path(factory.__file__).resolve().parent.parent / "tests" / "images"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (QEMU binds it a moment later; a lost race shows as a QEMU error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ssh_config_text(key: BuildKey, port: int, control_path: Path | None = None) -> str:
    """An ssh_config for the guest: only the build key, no host key bookkeeping, quiet."""
    lines = [
        "Host 127.0.0.1",
        "  HostName 127.0.0.1",
        "  User root",
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


def write_ssh_config(path: Path, key: BuildKey, port: int, control_path: Path | None = None) -> Path:
    atomic_write_text(path, ssh_config_text(key, port, control_path), mode=0o600)
    return path


def boot_failure(text: str) -> str | None:
    """The kind of boot failure `text` shows (e.g. 'kernel panic'), or None."""
    for kind, markers in BOOT_FAILURES:
        if any(m in text for m in markers):
            return kind
    return None


def parse_junit(path: Path) -> Summary:
    """Counts from pytest's JUnit XML (one <testsuite>, possibly inside <testsuites>)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise VerifyError(f"{path}: no readable JUnit report from the acceptance suite: {exc}") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = errors = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0))
        skipped += int(s.get("skipped", 0))
        errors += int(s.get("errors", 0))
    return Summary(passed=total - failed - skipped - errors, failed=failed, skipped=skipped, errors=errors)


def suite_command(spec: Spec, port: int, ssh_config: Path, junit: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        str(suite_dir()),
        f"--spec={spec.source.resolve()}",
        f"--hosts=ssh://root@127.0.0.1:{port}",
        f"--ssh-config={ssh_config}",
        f"--junitxml={junit}",
        # The suite must not write a cache into the source tree (several builds may run at once).
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
    ]


def ssh_argv(ssh_config: Path, *command: str) -> list[str]:
    return ["ssh", "-F", str(ssh_config), "127.0.0.1", *command]


def _image_format(image: Path) -> str:
    info = json.loads(tools.run(["qemu-img", "info", "--output=json", image], timeout=60).stdout)
    fmt: str = info["format"]
    return fmt


@contextlib.contextmanager
def overlay(image: Path, path: Path) -> Iterator[Path]:
    """A qcow2 overlay backed by `image` (which stays untouched), deleted when the block ends."""
    path.unlink(missing_ok=True)
    fmt = _image_format(image)
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", image.resolve(), path], timeout=60)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def vm_config(
    spec: Spec, disk: Path, port: int, sockets: Path, bios_log: Path, *, accel: str | None = None
) -> qemu.VmConfig:
    """Boot `disk` (qcow2, written to) headless with SSH forwarded from 127.0.0.1:`port`."""
    from factory import accel as accel_mod

    return qemu.VmConfig(
        serial_socket=sockets / "serial.sock",
        qmp_socket=sockets / "qmp.sock",
        memory_mib=spec.vm.memory_mib,
        cpus=spec.vm.cpus,
        accel="kvm" if (accel or accel_mod.resolve(spec.vm.accel)) == "kvm" else "tcg",
        firmware=spec.vm.firmware.value,
        disks=(qemu.Disk(disk, "qcow2"),),
        boot_order="c",
        hostfwd=(qemu.HostFwd(port, 22),),
        no_reboot=True,
        name=f"verify-{spec.name}",
        extra_args=(
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


def _fail(message: str, transcript: Path, *extra: Path) -> VerifyError:
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
    vm: qemu.Vm, ssh_config: Path, *, port: int, timeout: float, transcript: Path, bios_log: Path
) -> float:
    """Wait until `ssh true` works; fail at once on a boot failure. Returns the seconds waited.

    The console is read between short probes: a guest whose serial output is not drained stalls on its
    own printk, so a long blocking probe would slow the very boot it waits for.
    """
    started = time.monotonic()
    deadline = started + timeout
    seen = ""
    login_at: float | None = None
    rejected = 0
    next_probe = started
    while True:
        chunk = vm.console.read(0.25)
        if chunk:
            # Keep enough to match a marker split across two reads.
            seen = (seen + chunk)[-8192:]
        kind = boot_failure(seen)
        if kind is None and (chunk is None or not vm.running()):
            with contextlib.suppress(OSError):
                kind = boot_failure(bios_log.read_text(errors="replace"))
            code = vm.proc.poll()
            raise _fail(
                f"the VM exited before SSH came up ({kind or f'QEMU exit status {code}'})",
                transcript,
                bios_log,
            )
        if kind is not None:
            raise _fail(f"the image did not boot to SSH: {kind} on the serial console", transcript)
        now = time.monotonic()
        if login_at is None and LOGIN_PROMPT_RE.search(seen):
            login_at = now
        if now >= next_probe:
            if ssh_banner(port):
                if _ssh_login(ssh_config):
                    return time.monotonic() - started
                rejected += 1
                if rejected >= MAX_LOGIN_FAILURES:
                    raise _fail(
                        f"sshd answers but root cannot log in with the build key ({rejected} attempts): "
                        "is the key's %post in the kickstart, and root login by key allowed?",
                        transcript,
                    )
            next_probe = time.monotonic() + SSH_PROBE_INTERVAL_S
        if login_at is not None and now - login_at > LOGIN_GRACE_S:
            raise _fail(
                f"the guest reached a login prompt but SSH on 127.0.0.1 did not answer within "
                f"{LOGIN_GRACE_S:.0f} s (is sshd installed and enabled?)",
                transcript,
            )
        if now > deadline:
            raise _fail(f"SSH did not answer within spec.timeouts.ssh = {timeout:.0f} s", transcript)


@contextlib.contextmanager
def draining(vm: qemu.Vm) -> Iterator[None]:
    """Keep reading the serial console (into the transcript) in a thread while the block runs."""
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set() and vm.console.read(0.25) is not None:
            pass

    thread = threading.Thread(target=drain, name="console-drain", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def run_suite(spec: Spec, port: int, ssh_config: Path, junit: Path, log: Path) -> tuple[int, float]:
    """Run tests/images against the guest; returns pytest's exit status and the seconds it took."""
    started = time.monotonic()
    junit.unlink(missing_ok=True)
    try:
        proc = tools.run(
            suite_command(spec, port, ssh_config, junit),
            timeout=spec.timeouts.verify,
            check=False,
            cwd=suite_dir().parent.parent,
        )
    except FactoryError as exc:
        raise VerifyError(f"the acceptance suite did not finish: {exc.message}") from None
    atomic_write_text(log, (proc.stdout + proc.stderr).decode(errors="replace"))
    return proc.returncode, time.monotonic() - started


def _close_ssh_master(ssh_config: Path) -> None:
    # testinfra asks ssh for ControlPersist: end the master now instead of leaving it behind for a minute.
    tools.run(["ssh", "-F", str(ssh_config), "-O", "exit", "127.0.0.1"], timeout=15, check=False)


def verify(spec: Spec, image: Path, build: BuildDir, *, key: BuildKey) -> VerifyResult:
    """Boot `image` on an overlay, wait for SSH, run tests/images; the image itself is never modified."""
    checks.require_known_skips(spec)
    if not image.is_file():
        raise VerifyError(f"{image}: no such image to verify")
    if not key.exists():
        raise VerifyError(f"{key.private}: the build key is missing (was the image already sealed?)")
    if not suite_dir().is_dir():
        raise VerifyError(
            f"{suite_dir()}: the acceptance suite is missing (run the factory from its source tree)"
        )
    out = build.path / "verify"
    out.mkdir(parents=True, exist_ok=True)
    transcript, bios_log, junit = out / "console.log", out / "bios.log", out / "junit.xml"
    for stale in (transcript, bios_log, junit):
        stale.unlink(missing_ok=True)
    image_sha256 = digest.sha256_file(image)
    port = free_port()
    # Unix sockets (QEMU's, ssh's ControlPath) must fit in 107 bytes: keep them out of the build path.
    sockets = Path(tempfile.mkdtemp(prefix="factory-verify-"))
    try:
        ssh_config = write_ssh_config(out / "ssh_config", key, port, sockets / "ssh-%C")
        with (
            overlay(image, out / "overlay.qcow2") as disk,
            qemu.running(vm_config(spec, disk, port, sockets, bios_log), transcript) as vm,
        ):
            ssh_ready_s = wait_for_ssh(
                vm, ssh_config, port=port, timeout=spec.timeouts.ssh, transcript=transcript, bios_log=bios_log
            )
            try:
                with draining(vm):
                    status, suite_s = run_suite(spec, port, ssh_config, junit, out / "pytest.log")
            finally:
                _close_ssh_master(ssh_config)
            # The overlay is thrown away: no need for a clean shutdown, QEMU is stopped when the block ends.
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if digest.sha256_file(image) != image_sha256:
        raise VerifyError(f"{image}: the image changed while it was verified; refusing to trust it")
    if status not in (0, 1):
        # 2 interrupted, 3 internal error, 4 usage error, 5 nothing collected: the suite itself broke.
        raise _fail(
            f"the acceptance suite could not run (pytest exit status {status}); see {out / 'pytest.log'}",
            out / "pytest.log",
            transcript,
        )
    summary = parse_junit(junit)
    return VerifyResult(
        passed=status == 0 and summary.failed == 0 and summary.errors == 0,
        image_sha256=image_sha256,
        junit=junit,
        summary=summary,
        ssh_ready_s=round(ssh_ready_s, 2),
        suite_s=round(suite_s, 2),
        transcript=transcript,
    )
