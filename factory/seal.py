"""The seal stage: generalise the verified image so every instance made from it is its own machine.

    seal(spec, image, build, key=key) -> SealResult

How: boot a standalone writable copy (`sealed.qcow2.tmp`) with the build key, run the cleanup script over
SSH, power the guest off, wait for QEMU to exit; then re-check the copy *offline* with libguestfs
(`guestfish --ro`, which reads xfs for EL and ext4 for the testbed alike) and only then rename it to
`sealed.qcow2`. Offline, because booting the sealed image would make new host keys and a machine-id.

Why not virt-sysprep: it would do the cleanup offline in one appliance boot, but its defaults also delete
every user's ~/.ssh and it needs per-OS knowledge we would have to turn off piece by piece; the script
below is short, runs the same on EL 7 and the testbed, and its steps are unit-tested against a fake root.
libguestfs is still used for the re-check (one appliance boot, about 15 s under TCG: see the report).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory import digest, guest, qemu, sshkey, tools
from factory.errors import FactoryError, VerifyError
from factory.record import BuildDir
from factory.spec import Spec
from factory.sshkey import KEY_COMMENT, BuildKey

POWEROFF_TIMEOUT_S = 180.0
GUESTFISH_TIMEOUT_S = 600.0

# The cleanup, one step per line: (name, POSIX sh). `$R` is the root of the tree to clean ("" in the guest;
# a folder in the unit tests). Every step prints what it removed, so the result lists what really went.
CLEANUP: tuple[tuple[str, str], ...] = (
    (
        "build key",
        f'f="$R/root/.ssh/authorized_keys"; if [ -f "$f" ] && grep -q -F "{KEY_COMMENT}" "$f"; then '
        f'grep -v -F "{KEY_COMMENT}" "$f" >"$f.seal" || true; cat "$f.seal" >"$f"; rm -f "$f.seal"; '
        'echo "$f: build key line"; fi',
    ),
    ("ssh host keys", 'for f in "$R"/etc/ssh/ssh_host_*; do [ -e "$f" ] && rm -f "$f" && echo "$f"; done'),
    # Truncated, not deleted: systemd treats an empty machine-id as "first boot" and makes a new one.
    ("machine-id", 'f="$R/etc/machine-id"; if [ -s "$f" ]; then : >"$f"; echo "$f: truncated"; fi'),
    (
        "dbus machine-id",
        'f="$R/var/lib/dbus/machine-id"; if [ -f "$f" ] && [ ! -L "$f" ]; then rm -f "$f"; echo "$f"; fi',
    ),
    (
        "logs",
        'if [ -d "$R/var/log" ]; then find "$R/var/log" -type f -size +0 ! -path "*/journal/*" '
        '-exec sh -c \'for f; do : >"$f"; echo "$f: truncated"; done\' sh {} +; fi',
    ),
    (
        "journal",
        'if [ -d "$R/var/log/journal" ]; then find "$R/var/log/journal" -mindepth 1 -maxdepth 1 '
        "-exec rm -rf {} + -exec echo {} \\; ; fi",
    ),
    (
        "shell history",
        'for f in "$R"/root/.bash_history "$R"/root/.ash_history "$R"/home/*/.bash_history; do '
        '[ -e "$f" ] && rm -f "$f" && echo "$f"; done',
    ),
    (
        "dhcp leases",
        'for f in "$R"/var/lib/dhclient/* "$R"/var/lib/dhcp/*.leases "$R"/var/lib/NetworkManager/*.lease; do '
        '[ -e "$f" ] && rm -f "$f" && echo "$f"; done',
    ),
    (
        "ifcfg HWADDR/UUID",
        'for f in "$R"/etc/sysconfig/network-scripts/ifcfg-*; do [ -f "$f" ] || continue; '
        'if grep -q -E "^(HWADDR|UUID)=" "$f"; then sed -i -E "/^(HWADDR|UUID)=/d" "$f"; '
        'echo "$f: HWADDR/UUID"; fi; done',
    ),
    (
        "kickstart copies",
        'for f in "$R"/root/anaconda-ks.cfg "$R"/root/original-ks.cfg "$R"/root/ks.cfg "$R"/tmp/ks.cfg; do '
        '[ -e "$f" ] && rm -f "$f" && echo "$f"; done',
    ),
)


# Detached and delayed, so the SSH session ends cleanly before the shutdown; the guest's shutdown flushes its
# filesystems and QEMU (-no-reboot) exits when it powers off.
POWEROFF = "nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &\n"


def cleanup_script() -> str:
    """The whole cleanup as one sh script; run as `sh -c SCRIPT sh [ROOT]`."""
    steps = "\n".join(f"# {name}\n{code}" for name, code in CLEANUP)
    return f'set -u\nR="${{1:-}}"\n{steps}\nsync\n'


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
    # Always True in a returned result: a failed re-check raises VerifyError and keeps no sealed image.
    recheck_passed: bool
    removed: tuple[str, ...]


# One guestfish session (one appliance boot) reads everything the re-check needs; `-` lets a command fail
# (a missing file) without ending the script, and the echo lines mark where each answer starts.
GUESTFISH_SCRIPT = """\
echo ::ssh
ls /etc/ssh
echo ::authorized_keys
-cat /root/.ssh/authorized_keys
echo ::machine-id
-filesize /etc/machine-id
echo ::kickstart
is-file /root/anaconda-ks.cfg
echo ::end
"""


def parse_recheck(output: str) -> Recheck:
    """Judge guestfish's answers to GUESTFISH_SCRIPT."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("::"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line.strip())
    if "end" not in sections:
        raise VerifyError(
            "the offline re-check of the sealed image did not complete (guestfish output cut short)"
        )
    machine_id = sections.get("machine-id", [])
    return Recheck(
        build_key_gone=not any(KEY_COMMENT in ln for ln in sections.get("authorized_keys", [])),
        host_keys_gone=not any(ln.startswith("ssh_host_") for ln in sections.get("ssh", [])),
        # No machine-id file at all is fine too (the OS makes one at first boot).
        machine_id_empty=machine_id in ([], ["0"]),
        kickstart_gone=sections.get("kickstart") == ["false"],
    )


def guestfish_env(accel: str) -> dict[str, str]:
    env = {"LIBGUESTFS_BACKEND": "direct"}
    if accel == "tcg":
        # libguestfs tries KVM whenever /dev/kvm exists; where KVM does not really work its appliance aborts.
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def recheck(image: Path, accel: str) -> Recheck:
    """Read the sealed image offline (never booted: booting would regenerate what sealing removed)."""
    proc = tools.run(
        ["guestfish", "--ro", "-a", image, "-i"],
        input=GUESTFISH_SCRIPT.encode(),
        env=guestfish_env(accel),
        timeout=GUESTFISH_TIMEOUT_S,
    )
    return parse_recheck(proc.stdout.decode(errors="replace"))


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
                # Power off from the same session: with its host keys gone, sshd accepts no new connection.
                done = tools.run(
                    guest.ssh_argv(ssh_config, "sh", "-s"),
                    input=(cleanup_script() + POWEROFF).encode(),
                    timeout=300,
                    check=False,
                )
                if done.returncode != 0:
                    err = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
                    raise VerifyError(
                        f"sealing: the cleanup failed in the guest: {' | '.join(err) or done.returncode}"
                    )
                try:
                    vm.wait_exit(POWEROFF_TIMEOUT_S)
                except FactoryError:
                    raise VerifyError(
                        f"sealing: the guest did not power off within {POWEROFF_TIMEOUT_S:.0f} s",
                        artifacts=(transcript,),
                    ) from None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return tuple(ln.strip() for ln in done.stdout.decode(errors="replace").splitlines() if ln.strip())


def seal(spec: Spec, image: Path, build: BuildDir, *, key: BuildKey) -> SealResult:
    """Generalise a verified image into `BUILD/sealed.qcow2`; deletes the build key afterwards."""
    from factory import accel as accel_mod

    if not image.is_file():
        raise VerifyError(f"{image}: no such image to seal")
    if not key.exists():
        raise VerifyError(f"{key.private}: the build key is missing (was the image already sealed?)")
    out = build.path / "seal"
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "console.log", out / "bios.log"):
        stale.unlink(missing_ok=True)
    source_sha256 = digest.sha256_file(image)
    final = build.path / "sealed.qcow2"
    tmp = build.path / "sealed.qcow2.tmp"
    final.unlink(missing_ok=True)
    accel = accel_mod.resolve(spec.vm.accel)
    try:
        # A standalone copy (no backing file): the export must not depend on the installed disk.
        tools.run(["qemu-img", "convert", "-O", "qcow2", image, tmp], timeout=1800)
        removed = _clean_over_ssh(spec, tmp, key, out, accel)
        check = recheck(tmp, accel)
        if not check.passed:
            raise VerifyError(
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
        raise VerifyError(f"{image}: the verified image changed while it was sealed")
    # The sealed image cannot be logged into with this key any more; nothing else may use it either.
    sshkey.remove(key)
    return SealResult(
        sealed_image=final,
        source_sha256=source_sha256,
        sealed_sha256=sealed_sha256,
        recheck_passed=True,
        removed=removed,
    )
