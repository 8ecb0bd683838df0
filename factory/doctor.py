"""What this host has for building images: QEMU, the accelerator verdict, each capability proven by a
probe (`factory.host.capabilities`), each host tool with its package, the cache.

`diagnose()` gathers it into one frozen report; `factory doctor` prints it (or --json) and exits 3 unless
every capability a testbed build needs works ("ready").
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core import paths
from factory.errors import ToolError
from factory.host import capabilities, hostdeps, tools
from factory.host.capabilities import CapabilityStatus
from factory.stages.media import media
from factory.vm.accel import KVM_DEVICE

if TYPE_CHECKING:
    from factory.vm.accel import ProbeGuest


@dataclass(frozen=True)
class ToolSpec:
    name: str
    # "required" for every build, else what needs it ("testbed", "export tests", "uefi").
    needed_for: str
    version_args: tuple[str, ...] = ("--version",)


# Version flags where --version is not it; files (absolute paths) have none.
VERSION_ARGS: dict[str, tuple[str, ...]] = {
    "xorriso": ("-version",),
    "ssh": ("-V",),
    "ssh-keygen": (),
    "mkfs.ext4": ("-V",),
    "debugfs": ("-V",),
    "mformat": ("--version",),
    "depmod": ("--version",),
}
# Every program and file a capability uses, in report order, with what needs it.
_NEEDED_FOR: dict[str, str] = {}
for _cap in capabilities.CAPABILITIES:
    for _tool in _cap.tools:
        _NEEDED_FOR.setdefault(_tool, _cap.needed_for)  # the first (most required) capability using it
TOOLS: tuple[ToolSpec, ...] = tuple(
    ToolSpec(tool, needed, () if tool.startswith("/") else VERSION_ARGS.get(tool, ("--version",)))
    for tool, needed in _NEEDED_FOR.items()
)
READY_FOR = ("required", "testbed")


@dataclass(frozen=True)
class ToolStatus:
    name: str
    needed_for: str
    path: str | None  # None: missing
    version: str  # first line of its version output, "present" when it has none, "missing"
    deb: str
    rpm: str

    @property
    def required(self) -> bool:
        return self.needed_for == "required"


@dataclass(frozen=True)
class AccelStatus:
    kvm_device: bool  # /dev/kvm exists
    kvm_accessible: bool  # ... and this user may open it
    # "kvm", "tcg" (a probe boot did not come up under KVM), "not probed yet", or "probe unavailable".
    probe_verdict: str
    # What a build with vm.accel: auto would use now.
    auto_uses: str


@dataclass(frozen=True)
class CachedIso:
    path: Path
    size: int
    sha256: str  # verified before the file got its name


@dataclass(frozen=True)
class CacheStatus:
    path: Path
    size: int  # bytes in the whole cache
    isos: tuple[CachedIso, ...]
    remastered: tuple[Path, ...]
    # Local ISOs whose sha256 was verified: "path|size|mtime_ns" -> sha256.
    verified_local: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Report:
    qemu_path: str | None
    qemu_version: str
    accel: AccelStatus
    tools: tuple[ToolStatus, ...]
    cache: CacheStatus
    capabilities: tuple[CapabilityStatus, ...] = ()

    @property
    def missing_required(self) -> tuple[ToolStatus, ...]:
        return tuple(t for t in self.tools if t.required and t.path is None)

    @property
    def failed(self) -> tuple[CapabilityStatus, ...]:
        """Capabilities a testbed build needs whose probe failed."""
        return tuple(c for c in self.capabilities if not c.ok and c.needed_for in READY_FOR)

    @property
    def ok(self) -> bool:
        """Ready: a testbed build can run (every capability it needs was proven)."""
        return not self.missing_required and not self.failed


def _version(spec: ToolSpec, path: str) -> str:
    if not spec.version_args:
        return "present"
    try:
        proc = tools.run([path, *spec.version_args], timeout=30, check=False)
    except ToolError:
        return "unknown"
    # ssh -V and mkfs.ext4 -V print to stderr.
    text = (proc.stdout or b"").decode(errors="replace").strip() or (proc.stderr or b"").decode(
        errors="replace"
    ).strip()
    return text.splitlines()[0] if text else "unknown"


def tool_status(spec: ToolSpec) -> ToolStatus:
    deb, rpm = tools.PACKAGES.get(spec.name, (spec.name, spec.name))
    if spec.name.startswith("/"):
        path = spec.name if hostdeps.is_present(spec.name) else None
    else:
        path = shutil.which(spec.name)
    version = "missing" if path is None else _version(spec, path)
    return ToolStatus(
        name=spec.name, needed_for=spec.needed_for, path=path, version=version, deb=deb, rpm=rpm
    )


def _probe_guest() -> ProbeGuest | None:
    """A kernel for the KVM probe: the appliance kernel (fetched once), or None where none can be had."""
    from factory.host import supermin
    from factory.vm import accel

    try:
        return accel.ProbeGuest(supermin.appliance_kernel().vmlinuz) if shutil.which("apt-get") else None
    except ToolError:
        return None


def accel_status(*, probe: bool = False) -> AccelStatus:
    """The accelerator verdict; with `probe`, an accessible /dev/kvm is proven by booting a kernel under
    KVM once per host (the verdict is cached), as `vm.accel: auto` would before a build."""
    device = KVM_DEVICE.exists()
    accessible = device and os.access(KVM_DEVICE, os.R_OK | os.W_OK)
    try:
        # Another stage's module: optional here so doctor still reports the rest when it is broken/absent.
        from factory.spec import Accel
        from factory.vm import accel
    except ImportError:
        return AccelStatus(device, accessible, "probe unavailable", "tcg" if not accessible else "unknown")
    quiet = logging.getLogger("factory.vm.accel")
    level = quiet.level
    # resolve() warns about falling back to TCG: here that is the report itself, not a warning.
    quiet.setLevel(logging.ERROR)
    try:
        guest = _probe_guest() if probe and accessible and accel.cached_verdict() is None else None
        auto = accel.resolve(Accel.AUTO, guest)
        cached = accel.cached_verdict()
    except Exception as exc:  # doctor must report, not crash, whatever the probe module does
        return AccelStatus(device, accessible, f"probe unavailable ({type(exc).__name__}: {exc})", "unknown")
    finally:
        quiet.setLevel(level)
    return AccelStatus(device, accessible, cached or "not probed yet", auto)


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            try:
                total += (
                    Path(dirpath) / name
                ).lstat().st_blocks * 512  # real use: ISOs and images are sparse
            except OSError:
                continue
    return total


def cache_status() -> CacheStatus:
    root = paths.cache_dir()
    isos = tuple(CachedIso(path=p, size=size, sha256=p.stem) for p, size in media.cached_isos())
    remastered_dir = root / "remastered"
    remastered = tuple(sorted(remastered_dir.glob("*.iso"))) if remastered_dir.is_dir() else ()
    return CacheStatus(
        path=root,
        size=_tree_size(root),
        isos=isos,
        remastered=remastered,
        verified_local=tuple(sorted(media.verified_hashes().items())),
    )


def diagnose(*, probe: bool = True) -> Report:
    """Look at the host: each tool's version and, with `probe`, every capability proven by using it
    (boots a kernel under TCG, starts libguestfs's appliance, ...)."""
    statuses = tuple(tool_status(t) for t in TOOLS)
    qemu = statuses[0]
    proven = capabilities.check(c.name for c in capabilities.CAPABILITIES) if probe else ()
    return Report(
        qemu_path=qemu.path,
        qemu_version=qemu.version,
        accel=accel_status(probe=probe),
        tools=statuses,
        cache=cache_status(),
        capabilities=proven,
    )
