"""Generalise a running guest: run the shipped `seal.sh` over SSH, then power the guest off.

Used at the end of a passing verify boot (so sealing needs no second boot) and by the seal stage itself
when there is no generalised verify overlay to take over (e.g. `--from seal` after it was removed).
"""

from __future__ import annotations

import json
from pathlib import Path

from factory.core.record import BuildDir, atomic_write_text
from factory.errors import FactoryError, SealError
from factory.host import tools
from factory.vm import guest, qemu
from factory.vm.sshkey import KEY_COMMENT

SCRIPT = Path(__file__).with_name("seal.sh")
# Kept in BUILD/verify/ by a passing, generalised verify boot; taken over (and removed) by seal.
GENERALISED = "generalised.qcow2"
GENERALISED_NOTE = "generalised.json"
POWEROFF_TIMEOUT_S = 180.0
CLEANUP_TIMEOUT_S = 300.0
# Detached and delayed, so the SSH session ends cleanly before the shutdown; the guest's shutdown flushes
# its filesystems and QEMU (-no-reboot) exits when it powers off.
POWEROFF = "nohup sh -c 'sleep 1; poweroff' >/dev/null 2>&1 &\n"


def cleanup_script() -> str:
    return SCRIPT.read_text()


def run_cleanup(ssh_config: Path) -> tuple[str, ...]:
    """Run the cleanup and schedule the power-off in one SSH session (without host keys, sshd takes no
    new one); returns what the cleanup removed."""
    done = tools.run(
        guest.ssh_argv(ssh_config, "sh", "-s", "--", '""', KEY_COMMENT),
        input=(cleanup_script() + POWEROFF).encode(),
        timeout=CLEANUP_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SealError(f"sealing: the cleanup failed in the guest: {' | '.join(err) or done.returncode}")
    return tuple(ln.strip() for ln in done.stdout.decode(errors="replace").splitlines() if ln.strip())


def generalise(vm: qemu.Vm, ssh_config: Path, transcript: Path) -> tuple[str, ...]:
    """Clean the guest and wait until QEMU has exited (its disk is then complete and consistent)."""
    removed = run_cleanup(ssh_config)
    try:
        vm.wait_exit(POWEROFF_TIMEOUT_S)
    except FactoryError:
        raise SealError(
            f"sealing: the guest did not power off within {POWEROFF_TIMEOUT_S:.0f} s", artifacts=(transcript,)
        ) from None
    return removed


def write_generalised_note(out: Path, source_sha256: str, removed: tuple[str, ...]) -> None:
    """Verify's note beside its generalised overlay: which image it is backed by and what went."""
    atomic_write_text(
        out / GENERALISED_NOTE,
        json.dumps({"source_sha256": source_sha256, "removed": list(removed)}, indent=2) + "\n",
    )


def generalised_overlay(build: BuildDir, source_sha256: str) -> tuple[Path, tuple[str, ...]] | None:
    """Verify's generalised overlay of this very image, if there is one."""
    folder = build.verify_dir
    disk, note = folder / GENERALISED, folder / GENERALISED_NOTE
    try:
        doc = json.loads(note.read_text())
    except (OSError, ValueError):
        return None
    if not disk.is_file() or doc.get("source_sha256") != source_sha256:
        return None
    return disk, tuple(str(r) for r in doc.get("removed", []))


def drop_generalised(build: BuildDir) -> None:
    for name in (GENERALISED, GENERALISED_NOTE):
        (build.verify_dir / name).unlink(missing_ok=True)
