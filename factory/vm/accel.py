"""Which accelerator to use: KVM only when it really runs a guest, else TCG.

`/dev/kvm` being present is not "KVM works": on some hosts a KVM guest hangs right after the firmware.
So `auto` boots a small kernel + initramfs under KVM and waits (at most PROBE_SECONDS) for the kernel's
first line on the serial console. The verdict is cached per host, keyed by the QEMU version, the host
kernel and whether /dev/kvm is present, so the probe runs once per host, not per build.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.core import digest, paths
from factory.core.record import atomic_write_text
from factory.errors import FactoryError, ToolError
from factory.spec import Accel
from factory.vm import qemu
from factory.vm.console import ConsoleError

log = logging.getLogger("factory.vm.accel")

PROBE_SECONDS = 15.0
# The kernel's first console line: printed (replayed from the log buffer) once ttyS0 is registered.
PROBE_MARKER = r"Linux version \d"
KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True)
class ProbeGuest:
    """A bootable kernel (and initramfs) for the probe: the install media's own, or the testbed's."""

    kernel: Path
    initrd: Path | None = None


def kvm_usable_device() -> bool:
    return KVM_DEVICE.exists() and os.access(KVM_DEVICE, os.R_OK | os.W_OK)


def cache_key() -> str:
    return digest.combine(qemu.qemu_version(), platform.release(), str(KVM_DEVICE.exists()))


def _cache_file() -> Path:
    return paths.cache_dir() / "accel-probe.json"


def cached_verdict() -> Literal["kvm", "tcg"] | None:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return None
    verdict = data.get(cache_key()) if isinstance(data, dict) else None
    return verdict if verdict in ("kvm", "tcg") else None


def _store(verdict: Literal["kvm", "tcg"], reason: str) -> None:
    try:
        data = json.loads(_cache_file().read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[cache_key()] = verdict
    data[f"{cache_key()}:why"] = reason
    atomic_write_text(_cache_file(), json.dumps(data, indent=2, sort_keys=True) + "\n")


def probe(
    guest: ProbeGuest, timeout: float = PROBE_SECONDS, accel: Literal["kvm", "tcg"] = "kvm"
) -> tuple[bool, str]:
    """Boot `guest` under `accel`; (True, ...) if its kernel printed within `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="factory-kvm-probe-") as tmp:
        d = Path(tmp)
        cfg = qemu.VmConfig(
            serial_socket=d / "console.sock",
            qmp_socket=d / "qmp.sock",
            accel=accel,
            memory_mib=256,
            kernel=guest.kernel,
            initrd=guest.initrd,
            append="console=ttyS0 panic=-1",
            network=False,
            name="factory-kvm-probe",
        )
        try:
            with qemu.Vm.start(cfg, d / "console.log", start_timeout=timeout) as vm:
                try:
                    vm.console.expect([PROBE_MARKER], timeout, f"the probe kernel's first line under {accel}")
                except ConsoleError as exc:
                    vm.kill()
                    stderr = " | ".join(qemu.qemu_stderr_tail(vm))
                    return False, exc.message + (f" (qemu: {stderr})" if stderr else "")
        except ToolError as exc:
            return False, exc.message
    return True, f"a probe kernel booted under {accel}"


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    """Install, verify and seal each resolve the accelerator: say the fallback once per process."""
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def resolve(requested: Accel, guest: ProbeGuest | None = None) -> Literal["kvm", "tcg"]:
    """The accelerator to use. `auto` probes KVM once per host (with `guest`) and falls back to TCG."""
    if requested is Accel.TCG:
        return "tcg"
    if requested is Accel.KVM:
        if not kvm_usable_device():
            raise FactoryError(f"vm.accel is kvm but {KVM_DEVICE} is missing or not accessible")
        return "kvm"
    if not kvm_usable_device():
        _warn_once("KVM unavailable (%s missing or not accessible): using TCG (slow)", KVM_DEVICE)
        return "tcg"
    verdict = cached_verdict()
    if verdict is None:
        if guest is None:
            # Nothing to boot: do not trust an unprobed /dev/kvm (it hangs on some hosts).
            _warn_once("KVM not probed yet on this host (no probe kernel given): using TCG")
            return "tcg"
        ok, why = probe(guest)
        verdict = "kvm" if ok else "tcg"
        _store(verdict, why)
    if verdict == "tcg":
        _warn_once("KVM present but a probe guest did not boot under it: using TCG (slow)")
    return verdict
