"""The install stage: serve the kickstart, boot the installer headless, watch it, keep the disk on success.

    install(spec, media, build) -> InstallResult

Steps: extract the installer's kernel+initrd (also the KVM probe's guest) -> pick the accelerator ->
build key + kickstart text -> temporary qcow2 -> kickstart HTTP server -> QEMU -> (serial-prompt: type
the boot line) -> watch console + anaconda.log until the guest powers off, a failure marker shows, the
guest goes quiet, or a deadline passes -> rename the disk to disk.qcow2 only after success.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import FactoryError, InstallError, MediaError, ToolError
from factory.host import tools
from factory.spec import BootMode, Spec
from factory.stages.install import bootprompt, monitor
from factory.stages.install.ksserver import KickstartServer
from factory.stages.media import media
from factory.stages.media.media import MediaResult
from factory.stages.validate.flatten import flatten_for_spec
from factory.vm import accel, qemu, sshkey

log = logging.getLogger("factory.stages.install.install")

# After the first failure marker, keep reading this long: the lines after it (the traceback's last line,
# the kernel's panic reason) and a more specific marker often follow within a second.
GRACE_SECONDS = 1.5
POLL_SECONDS = 0.2
ProgressCallback = Callable[[monitor.Event], None]
# Builds the classified InstallError (with artifacts and the last lines) from a kind and a message.
Fail = Callable[[str, str], InstallError]


@dataclass(frozen=True)
class InstallResult:
    disk: Path
    kickstart_sha256: str  # of the served kickstart minus the build-key snippet
    iso_sha256: str
    accel: str
    qemu_version: str
    boot_mode: str
    guest_seconds: float  # QEMU start to QEMU exit
    total_seconds: float  # the whole stage, including extraction, disk creation and typing
    packages: int
    # serial-prompt only: characters repaired while typing the boot line.
    typing_repairs: int = 0


def escape_label(label: str) -> str:
    """A volume label as the kernel command line needs it in LABEL= (dracut decodes \\x20)."""
    return label.replace(" ", "\\x20")


def boot_arg_list(spec: Spec, volume_label: str, ks_url: str) -> list[str]:
    """The installer's kernel arguments: kickstart URL, text mode on the serial console, stage2 by label."""
    return [
        f"inst.ks={ks_url}",
        "inst.text",
        f"inst.stage2=hd:LABEL={escape_label(volume_label)}",
        "console=ttyS0",
        *spec.boot.extra_args,
    ]


def boot_args(spec: Spec, volume_label: str, ks_url: str) -> str:
    return " ".join(boot_arg_list(spec, volume_label, ks_url))


def pxe_boot_args(spec: Spec, ks_url: str, repo_url: str) -> str:
    """A network install's kernel arguments: no medium attached, the install source over HTTP."""
    return " ".join(
        [f"inst.ks={ks_url}", f"inst.repo={repo_url}", "inst.text", "console=ttyS0", *spec.boot.extra_args]
    )


def pxe_tftp_tree(
    tftp: Path, kernel: Path, initrd: Path, args: str, *, firmware: str, ovmf: Path = qemu.OVMF
) -> tuple[Path, str]:
    """What QEMU's TFTP serves for a network install, and the boot file DHCP names.

    BIOS: pxelinux and its config (QEMU's iPXE ROM loads pxelinux.0). UEFI: a GRUB EFI network image and its
    grub.cfg (OVMF's iPXE EFI driver loads grubx64.efi). Both boot the medium's pxeboot kernel and initrd.
    """
    from factory.stages.export import pxe

    tftp.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kernel, tftp / "vmlinuz")
    shutil.copyfile(initrd, tftp / "initrd.img")
    if firmware == "uefi":
        if not ovmf.is_file():
            raise ToolError(
                f"{ovmf} not found: a UEFI network install needs OVMF (Debian/Ubuntu: apt-get install ovmf; "
                "Fedora/RHEL: dnf install edk2-ovmf), or set vm.firmware: bios"
            )
        (tftp / "grub").mkdir(exist_ok=True)
        (tftp / "grub" / "grub.cfg").write_text(
            "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
            f"set timeout=0\nmenuentry install {{\n  linux /vmlinuz {args}\n  initrd /initrd.img\n}}\n"
        )
        pxe.grub_efi_image(tftp / "grubx64.efi")
        return tftp, "grubx64.efi"
    for path, package in ((pxe.PXELINUX, "pxelinux"), (pxe.LDLINUX, "syslinux-common")):
        if not path.is_file():
            raise ToolError(
                f"{path} not found: boot.mode pxe needs it (Debian/Ubuntu: apt-get install {package})"
            )
    (tftp / "pxelinux.cfg").mkdir(exist_ok=True)
    shutil.copyfile(pxe.PXELINUX, tftp / "pxelinux.0")
    shutil.copyfile(pxe.LDLINUX, tftp / "ldlinux.c32")
    (tftp / "pxelinux.cfg" / "default").write_text(
        f"serial 0 115200\ndefault install\nprompt 0\ntimeout 0\nlabel install\n  kernel vmlinuz\n"
        f"  append initrd=initrd.img {args}\n"
    )
    return tftp, "pxelinux.0"


def install(
    spec: Spec,
    media_result: MediaResult,
    build: BuildDir,
    *,
    keep_on_error: bool = False,
    progress: ProgressCallback | None = None,
    ks_path_for_guest: str | None = None,
    kickstart: str | None = None,
) -> InstallResult:
    """Install `media_result` with `spec`'s kickstart into build/disk.qcow2; InstallError on any failure.

    `progress` gets every monitor event (default: a rich status line + package bar on a terminal).
    `ks_path_for_guest` (tests only) tells the guest a different path on the kickstart server.
    `kickstart`: the flattened kickstart when the caller has it already (the build flattens it once).
    """
    started = time.monotonic()
    boot_dir = build.boot_dir
    part = build.disk_part
    final = build.disk
    final.unlink(missing_ok=True)  # a rebuild: the old disk must not survive a failed attempt
    try:
        kernel = media.read_file(media_result.iso, "/isolinux/vmlinuz", boot_dir / "vmlinuz")
        initrd = media.read_file(media_result.iso, "/isolinux/initrd.img", boot_dir / "initrd.img")
        chosen = accel.resolve(spec.vm.accel, accel.ProbeGuest(kernel, initrd))
        key = sshkey.create(build.key)
        if kickstart is None:
            kickstart = flatten_for_spec(spec).text
        served = kickstart + sshkey.post_snippet(key)
        tools.run(["qemu-img", "create", "-q", "-f", "qcow2", part, f"{spec.vm.disk_gib}G"], timeout=60)
        repo = None
        if spec.boot.mode is BootMode.PXE:
            # No medium in the VM: its files are served over HTTP, its network boot files over TFTP.
            repo = boot_dir / "repo"
            tools.run(
                ["xorriso", "-osirrox", "on", "-indev", media_result.iso, "-extract", "/", repo], timeout=600
            )
            for name in ("vmlinuz", "initrd.img"):
                if not (repo / "images" / "pxeboot" / name).is_file():
                    raise MediaError(
                        f"{media_result.iso}: no images/pxeboot/{name}: boot.mode pxe needs the medium's "
                        "network boot files"
                    )
        with _reporter(progress) as report:
            plan = _Plan(kernel, initrd, chosen, part, served, repo)
            guest_seconds, packages, repairs = _run_vm(
                spec, media_result, build, plan, report,
                keep_on_error=keep_on_error, ks_path_for_guest=ks_path_for_guest,
            )  # fmt: skip
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
        for f in (kernel_path := boot_dir / "vmlinuz", boot_dir / "initrd.img"):
            f.unlink(missing_ok=True)
        for folder in (boot_dir / "repo", boot_dir / "tftp"):
            _remove_tree(folder)
        with contextlib.suppress(OSError):
            kernel_path.parent.rmdir()
    return InstallResult(
        disk=final,
        kickstart_sha256=digest.sha256_text(kickstart),
        iso_sha256=media_result.sha256,
        accel=chosen,
        qemu_version=qemu.qemu_version(),
        boot_mode=spec.boot.mode.value,
        guest_seconds=round(guest_seconds, 3),
        total_seconds=round(time.monotonic() - started, 3),
        packages=packages,
        typing_repairs=repairs,
    )


@dataclass(frozen=True)
class _Plan:
    kernel: Path
    initrd: Path
    accel: str
    disk: Path  # the temporary qcow2
    served: str  # the kickstart text as served (with the build-key %post)
    repo: Path | None = None  # boot.mode pxe: the medium's files, served over HTTP


def _remove_tree(folder: Path) -> None:
    if folder.is_dir():
        # xorriso extracts the medium's read-only folder modes: make them writable to remove them.
        for root, dirs, _ in os.walk(folder):
            for d in dirs:
                os.chmod(Path(root) / d, 0o755)
        shutil.rmtree(folder, ignore_errors=True)


def _run_vm(
    spec: Spec,
    media_result: MediaResult,
    build: BuildDir,
    plan: _Plan,
    report: ProgressCallback,
    *,
    keep_on_error: bool,
    ks_path_for_guest: str | None,
) -> tuple[float, int, int]:
    """Boot and watch the installer; (guest seconds, packages, typing repairs) on success."""
    artifacts = (build.console_log, build.anaconda_log, build.ks_requests_log)
    for artifact in artifacts[:2]:
        artifact.unlink(missing_ok=True)  # a retry in the same build dir starts fresh transcripts
    # Unix socket paths hold 107 bytes: QEMU's live in a short temporary folder, not under the build path
    # (which can be deep). A link in the build dir names it, for `factory console BUILD`.
    sockets = Path(tempfile.mkdtemp(prefix="factory-install-"))
    link = build.console_socket
    link.unlink(missing_ok=True)
    link.symlink_to(sockets / "console.sock")
    kept = False

    def remove_sockets() -> None:
        if not kept:  # a VM kept for inspection still serves its console there
            link.unlink(missing_ok=True)
            shutil.rmtree(sockets, ignore_errors=True)

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_sockets)
        ks = cleanup.enter_context(KickstartServer(plan.served, build.ks_requests_log, repo=plan.repo))
        arg_list = boot_arg_list(spec, media_result.volume_label, ks.guest_url(ks_path_for_guest))
        args = " ".join(arg_list)
        serial = spec.boot.mode is BootMode.SERIAL_PROMPT
        tftp, bootfile = None, None
        if plan.repo is not None:
            args = pxe_boot_args(spec, ks.guest_url(ks_path_for_guest), ks.guest_url(ks.repo_path))
            pxeboot = plan.repo / "images" / "pxeboot"
            tftp, bootfile = pxe_tftp_tree(
                plan.disk.parent / ".boot" / "tftp",
                pxeboot / "vmlinuz",
                pxeboot / "initrd.img",
                args,
                firmware=spec.vm.firmware.value,
            )
        direct = not serial and tftp is None  # -kernel/-initrd/-append: boot.mode kernel
        # serial-prompt boots the remastered copy (serial isolinux with a plain boot: prompt, serial GRUB);
        # pxe boots from QEMU's TFTP with no medium attached.
        cdrom = None if tftp else media_result.boot_iso if serial else media_result.iso
        if serial and cdrom is None:
            raise MediaError(
                f"{media_result.iso}: boot.mode serial-prompt needs the media stage's serial boot copy "
                "(media.for_boot)"
            )
        line = bootprompt.plan(cdrom, sockets, arg_list) if serial and cdrom is not None else None
        cfg = qemu.VmConfig(
            serial_socket=sockets / "console.sock",
            qmp_socket=sockets / "qmp.sock",
            memory_mib=spec.vm.memory_mib,
            cpus=spec.vm.cpus,
            accel="kvm" if plan.accel == "kvm" else "tcg",
            firmware="uefi" if spec.vm.firmware.value == "uefi" else "bios",
            kernel=plan.kernel if direct else None,
            initrd=plan.initrd if direct else None,
            append=args if direct else None,
            disks=(qemu.Disk(plan.disk),),
            cdrom=cdrom,
            boot_order="d" if serial else "n" if tftp else None,
            tftp_root=tftp,
            bootfile=bootfile,
            anaconda_log=artifacts[1],
            no_reboot=True,
            name=f"factory-install-{build.spec_name}",
        )
        vm = qemu.Vm.start(cfg, artifacts[0], survive_parent=keep_on_error)
        try:
            vm.connect_qmp()
            repairs = 0
            if line is not None:
                outcome = bootprompt.boot(vm.console, line, spec.timeouts.boot_prompt)
                log.info("install: boot line typed at %s in %.1f s", outcome.loader, outcome.seconds)
                repairs = outcome.repairs
            packages = _watch(spec, vm, ks, artifacts, report)
            return vm.run_seconds, packages, repairs
        except InstallError as exc:
            exc.artifacts = exc.artifacts or artifacts  # a boot-loader error names the transcript too
            if keep_on_error and vm.running():
                vm.pause_and_detach()
                kept = True
                exc.details += (
                    f"\nThe VM is kept paused for inspection (qemu pid {vm.pid}).\n"
                    f"  attach to its serial console: factory console {build.path}\n"
                    f"  (or: socat - UNIX-CONNECT:{cfg.serial_socket})\n"
                    f"  resume it over QMP ({cfg.qmp_socket}) with 'cont'; stop it with: kill {vm.pid}"
                )
            raise
        finally:
            vm.kill()  # no-op when detached for inspection


class _LogTail:
    """New text appended to the installer log file (QEMU writes it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def read(self) -> str:
        if self._fh is None:
            try:
                self._fh = self.path.open(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                return ""
        return self._fh.read()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _watch(
    spec: Spec, vm: qemu.Vm, ks: KickstartServer, artifacts: tuple[Path, ...], report: ProgressCallback
) -> int:
    """Read the console and installer log until QEMU exits; raise a classified InstallError on failure."""
    t = spec.timeouts
    mon = monitor.Monitor()
    logtail = _LogTail(artifacts[1])
    start = time.monotonic()
    last_output = start
    failed_at: float | None = None

    def fail(kind: str, message: str) -> InstallError:
        return InstallError(kind, message, artifacts=artifacts, details=mon.details())

    def feed(source: monitor.Source, text: str) -> None:
        for event in mon.feed(source, text):
            report(event)

    try:
        while vm.running():
            data = vm.console.read(POLL_SECONDS)
            now = time.monotonic()
            if data:
                last_output = now
                feed("console", data)
            if logged := logtail.read():
                last_output = now
                feed("anaconda", logged)
            if mon.failures and failed_at is None:
                failed_at = now
            if failed_at is not None and now - failed_at >= GRACE_SECONDS:
                raise _classified(mon, fail, ks)
            if data is None:
                break  # the console closed: QEMU is exiting
            if failed_at is not None:
                continue  # a classified failure is in its grace period: no timer may replace it
            if not ks.fetched and now - start > t.kickstart_fetch:
                raise fail("kickstart-not-fetched", _not_fetched(ks, t.kickstart_fetch))
            if now - last_output > t.idle:
                raise fail("idle-timeout", f"no console or installer-log output for {t.idle} s (a hang?)")
            if now - start > t.install:
                raise fail("install-timeout", f"the install did not finish within {t.install} s")
        code = vm.wait_exit(10)
        # What QEMU wrote just before exiting.
        while (rest := vm.console.read(0.05)) not in (None, ""):
            feed("console", rest)
        feed("anaconda", logtail.read())
        for event in mon.flush():
            report(event)
    finally:
        logtail.close()
    _verdict(vm, code, mon, ks, fail)
    return mon.packages_total


def _verdict(
    vm: qemu.Vm,
    code: int,
    mon: monitor.Monitor,
    ks: KickstartServer,
    fail: Fail,
) -> None:
    """After QEMU exited by itself: success, or the classified reason it is not."""
    if mon.failures:
        raise _classified(mon, fail, ks)
    reason = vm.shutdown_reason()
    if code != 0:
        stderr = " | ".join(qemu.qemu_stderr_tail(vm))
        raise fail("qemu-failed", f"qemu exited with status {code}: {stderr or 'no error output'}")
    if not ks.fetched:
        raise fail("kickstart-not-fetched", "the guest stopped without ever fetching the kickstart")
    if reason == "guest-panic":
        raise fail("kernel-panic", "the guest kernel panicked")
    if reason == "guest-reset" and not mon.complete:
        # With -no-reboot a guest reboot ends QEMU: before "Installation complete" that is a failure.
        raise fail("rebooted-early", "the guest rebooted before the installer reported completion")
    if not mon.complete:
        # EL7 anaconda may power off without the text line; a clean power-off after the fetch counts.
        log.warning("the guest powered off without printing 'Installation complete' (reason: %s)", reason)


def _classified(mon: monitor.Monitor, fail: Fail, ks: KickstartServer) -> InstallError:
    cause = mon.cause()
    assert cause is not None
    message = mon.message(cause)
    if cause.kind == "kickstart-not-fetched":
        # dracut names the URL; the server's log says what it answered.
        asked = sorted({f"{r.path} ({r.status})" for r in ks.requests()})
        message += f"; the server answered {', '.join(asked)}" if asked else "; the server got no request"
    return fail(cause.kind, message)


def _not_fetched(ks: KickstartServer, seconds: int) -> str:
    asked = sorted({f"{r.path} ({r.status})" for r in ks.requests()})
    seen = f"; the guest asked only for {', '.join(asked)}" if asked else "; the server got no request at all"
    return f"the guest did not fetch the kickstart within {seconds} s{seen}"


@contextlib.contextmanager
def _reporter(progress: ProgressCallback | None) -> Iterator[ProgressCallback]:
    """The given callback, else a rich status line + package bar on a terminal, else debug logging."""
    if progress is not None:
        yield progress
        return
    if not sys.stderr.isatty():
        yield lambda event: log.debug("install: %s", event)
        return
    bar = Progress(
        TextColumn("[bold]install[/]"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=RichConsole(stderr=True),
        transient=True,
    )
    task = bar.add_task("starting", total=None)

    def update(event: monitor.Event) -> None:
        if isinstance(event, monitor.ProgressEvent):
            bar.update(
                task, completed=event.done, total=event.total, description=f"Installing {event.package}"
            )
        elif isinstance(event, monitor.StageEvent | monitor.CompleteEvent):
            bar.update(task, description=event.text if isinstance(event, monitor.StageEvent) else event.line)

    with bar:
        yield update


__all__ = [
    "FactoryError",
    "InstallError",
    "InstallResult",
    "boot_arg_list",
    "boot_args",
    "escape_label",
    "install",
]
