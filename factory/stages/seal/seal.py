"""The seal stage: generalise the verified image so every instance made from it is its own machine.

    seal(spec, image, build, key=key) -> SealResult

How: a passing verify boot already ran the shipped cleanup (`seal.sh`) in the guest and powered it off,
leaving its overlay as `verify/generalised.qcow2` with a note of the image it is backed by. Sealing turns
that overlay into a standalone copy (`sealed.qcow2.tmp`), re-checks the copy *offline*
(`factory.core.offline`:
debugfs for the testbed's ext4, libguestfs for EL's xfs) and only then renames it to `sealed.qcow2`.
Offline, because booting the sealed image would make new host keys and a machine-id. When there is no
generalised overlay for this image (removed, or from another image), seal boots a writable copy itself and
runs the same cleanup over SSH: slower, same result.

Why not virt-sysprep: its defaults also delete every user's ~/.ssh and it needs per-OS knowledge we would
have to turn off piece by piece; `seal.sh` is short, runs the same on EL 7 and the testbed, and is
unit-tested against a fake root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.core import digest, offline
from factory.core.record import BuildDir
from factory.errors import SealError, ToolError
from factory.host import tools
from factory.spec import Spec
from factory.stages.seal.generalise import drop_generalised, generalise, generalised_overlay
from factory.vm import guest, qemu, sshkey
from factory.vm.sshkey import KEY_COMMENT, BuildKey

# What the offline re-check reads.
SSH_DIR = "/etc/ssh"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
MACHINE_ID = "/etc/machine-id"
KICKSTART = "/root/anaconda-ks.cfg"


@dataclass(frozen=True)
class Recheck:
    build_key_gone: bool
    host_keys_gone: bool
    machine_id_empty: bool
    kickstart_gone: bool

    @property
    def passed(self) -> bool:
        return self.build_key_gone and self.host_keys_gone and self.machine_id_empty and self.kickstart_gone

    def problems(self) -> list[str]:
        names = {
            "build_key_gone": "the build key is still in /root/.ssh/authorized_keys",
            "host_keys_gone": "SSH host keys are still in /etc/ssh",
            "machine_id_empty": "/etc/machine-id is not empty",
            "kickstart_gone": "/root/anaconda-ks.cfg is still there",
        }
        return [msg for name, msg in names.items() if not getattr(self, name)]


@dataclass(frozen=True)
class SealResult:
    sealed_image: Path
    source_sha256: str
    sealed_sha256: str
    # Always True in a returned result: a failed re-check raises SealError and keeps no sealed image.
    recheck_passed: bool
    removed: tuple[str, ...]
    # "verify-boot" (the passing verify boot was generalised) or "seal-boot" (seal booted a copy itself).
    generalised_in: str = "seal-boot"
    reader: str = ""  # how the re-check read the image offline: debugfs or guestfish


def judge(snap: offline.Snapshot) -> Recheck:
    """The re-check's verdict on what was read from the sealed image."""
    keys = (snap.contents.get(AUTHORIZED_KEYS) or b"").decode(errors="replace")
    machine_id = snap.contents.get(MACHINE_ID)
    return Recheck(
        build_key_gone=KEY_COMMENT not in keys,
        host_keys_gone=not any(n.startswith("ssh_host_") for n in snap.listings.get(SSH_DIR) or ()),
        # No machine-id file at all is fine too (the OS makes one at first boot).
        machine_id_empty=not machine_id,
        kickstart_gone=snap.contents.get(KICKSTART) is None,
    )


def recheck(image: Path, accel: str) -> tuple[Recheck, str]:
    """Read the sealed image offline (never booted: booting would regenerate what sealing removed)."""
    try:
        snap = offline.snapshot(
            image, dirs=(SSH_DIR,), files=(AUTHORIZED_KEYS, MACHINE_ID, KICKSTART), accel=accel
        )
    except ToolError as exc:
        raise SealError(f"sealing: the offline re-check could not read the image: {exc.message}") from None
    return judge(snap), snap.reader


def _clean_over_ssh(spec: Spec, disk: Path, key: BuildKey, out: Path, accel: str) -> tuple[str, ...]:
    """Boot `disk` (writable), run the cleanup over SSH, power off; returns what the cleanup removed."""
    port = guest.free_port()
    sockets = Path(tempfile.mkdtemp(prefix="factory-seal-"))
    transcript, bios_log = out / "console.log", out / "bios.log"
    try:
        ssh_config = guest.write_ssh_config(out / "ssh_config", key, port)
        cfg = guest.vm_config(spec, disk, port, sockets, bios_log, accel=accel)
        with qemu.running(cfg, transcript) as vm:
            guest.wait_for_ssh(
                vm, ssh_config, port=port, timeout=spec.timeouts.ssh, transcript=transcript, bios_log=bios_log
            )
            with guest.draining(vm):
                return generalise(vm, ssh_config, transcript)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def seal(spec: Spec, image: Path, build: BuildDir, *, key: BuildKey) -> SealResult:
    """Generalise a verified image into `BUILD/sealed.qcow2`; deletes the build key afterwards."""
    from factory.vm import accel as accel_mod

    if not image.is_file():
        raise SealError(f"{image}: no such image to seal")
    if not key.exists():
        raise SealError(f"{key.private}: the build key is missing (was the image already sealed?)")
    out = build.seal_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "console.log", out / "bios.log"):
        stale.unlink(missing_ok=True)
    source_sha256 = digest.sha256_file(image)
    final = build.sealed_image
    tmp = final.with_name(final.name + ".tmp")
    final.unlink(missing_ok=True)
    accel = accel_mod.resolve(spec.vm.accel)
    taken = generalised_overlay(build, source_sha256)
    try:
        # A standalone copy (no backing file): the export must not depend on the installed disk.
        if taken is not None:
            tools.run(["qemu-img", "convert", "-O", "qcow2", taken[0], tmp], timeout=1800)
            removed, where = taken[1], "verify-boot"
        else:
            tools.run(["qemu-img", "convert", "-O", "qcow2", image, tmp], timeout=1800)
            removed, where = _clean_over_ssh(spec, tmp, key, out, accel), "seal-boot"
        check, reader = recheck(tmp, accel)
        if not check.passed:
            raise SealError(
                f"sealing: the sealed image failed its offline re-check: {'; '.join(check.problems())}",
                artifacts=(out / "console.log",),
            )
        sealed_sha256 = digest.sha256_file(tmp)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if digest.sha256_file(image) != source_sha256:
        final.unlink(missing_ok=True)
        raise SealError(f"{image}: the verified image changed while it was sealed")
    drop_generalised(build)
    # The sealed image cannot be logged into with this key any more; nothing else may use it either.
    sshkey.remove(key)
    return SealResult(
        sealed_image=final,
        source_sha256=source_sha256,
        sealed_sha256=sealed_sha256,
        recheck_passed=True,
        removed=removed,
        generalised_in=where,
        reader=reader,
    )
