"""A kernel for libguestfs's appliance that does not depend on the host's /boot.

libguestfs boots a small appliance (built by supermin from the host's packages) to read disks, and supermin
takes the appliance's kernel from /boot and /lib/modules. A fresh container or CI machine has no kernel
there ("supermin: failed to find a suitable kernel"), and on Ubuntu /boot/vmlinuz-* is readable by root
only, so a non-root build fails the same way. Instead of relying on either, the factory gives supermin a
kernel of its own through SUPERMIN_KERNEL / SUPERMIN_KERNEL_VERSION / SUPERMIN_MODULES: Debian's cloud
kernel (the one the testbed boots), fetched with `apt-get download`, unpacked with `dpkg-deb -x` and indexed
with `depmod -b`. None of that needs root, and it is cached per kernel version under the factory cache.

On hosts without apt (Fedora/RHEL), the host's own kernel is used when supermin can read one; otherwise the
error names `kernel-core`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from factory.core import paths
from factory.errors import ToolError
from factory.host import tools

KERNEL_META = "linux-image-cloud-amd64"
# supermin copies the appliance's modules to /lib/modules/<version>, creating the parent from the host's
# own /lib/modules: it fails with "lstat: /lib/modules" where that folder does not exist (minimal roots).
HOST_MODULES = Path("/lib/modules")


@dataclass(frozen=True)
class ApplianceKernel:
    version: str
    vmlinuz: Path
    modules: Path

    def env(self) -> dict[str, str]:
        return {
            "SUPERMIN_KERNEL": str(self.vmlinuz),
            "SUPERMIN_KERNEL_VERSION": self.version,
            "SUPERMIN_MODULES": str(self.modules),
        }


def host_kernel_readable(boot: Path = Path("/boot"), modules: Path = HOST_MODULES) -> bool:
    """True when supermin would find a kernel of the host's: a readable vmlinuz with its modules folder."""
    for vmlinuz in sorted(boot.glob("vmlinuz-*")):
        version = vmlinuz.name.removeprefix("vmlinuz-")
        if os.access(vmlinuz, os.R_OK) and (modules / version).is_dir():
            return True
    return False


def kernel_package() -> str:
    """The versioned kernel package Debian's cloud-kernel metapackage depends on."""
    out = tools.run(["apt-cache", "show", "--no-all-versions", KERNEL_META], timeout=120).stdout.decode()
    for line in out.splitlines():
        if line.startswith("Depends: "):
            for dep in line.split(": ", 1)[1].split(","):
                name = dep.strip().split(" ", 1)[0]
                if name.startswith("linux-image-"):
                    return name
    raise ToolError(f"apt knows no kernel package behind {KERNEL_META}: run `apt-get update`")


def _unpack(package: str, dest: Path) -> ApplianceKernel:
    with tempfile.TemporaryDirectory(prefix="appliance-kernel.", dir=dest.parent) as tmp:
        work = Path(tmp)
        tools.run(["apt-get", "download", package], cwd=work, timeout=600)
        deb = next(work.glob("*.deb"))
        root = work / "root"
        tools.run(["dpkg-deb", "-x", deb, root], timeout=300)
        versions = [p.name for p in (root / "lib" / "modules").iterdir()]
        if len(versions) != 1:
            raise ToolError(f"{deb.name}: expected one modules folder, found {versions}")
        # dpkg-deb -x runs no maintainer scripts: supermin needs modules.dep, which depmod writes.
        tools.run(["depmod", "-b", root, versions[0]], timeout=120)
        deb.unlink()
        os.replace(root, dest)
    return _found(dest)


def _found(dest: Path) -> ApplianceKernel:
    vmlinuz = next(iter(sorted((dest / "boot").glob("vmlinuz-*"))), None)
    if vmlinuz is None:
        raise ToolError(f"{dest}: no vmlinuz in the unpacked kernel package")
    version = vmlinuz.name.removeprefix("vmlinuz-")
    modules = dest / "lib" / "modules" / version
    if not (modules / "modules.dep").is_file():
        raise ToolError(f"{modules}: no modules.dep (the unpacked kernel is incomplete)")
    return ApplianceKernel(version=version, vmlinuz=vmlinuz, modules=modules)


def appliance_kernel(cache: Path | None = None) -> ApplianceKernel:
    """Debian's cloud kernel, unpacked once into the cache (no root, no /boot)."""
    if shutil.which("apt-get") is None:
        raise ToolError("no apt-get on this host: cannot fetch the appliance kernel")
    package = kernel_package()
    if not re.fullmatch(r"linux-image-[\w.+~-]+", package):
        raise ToolError(f"unexpected kernel package name {package!r}")
    root = (cache or paths.cache_dir()) / "appliance-kernel"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / package
    with FileLock(str(root / f"{package}.lock"), timeout=900):
        if dest.is_dir():
            return _found(dest)
        return _unpack(package, dest)


def ensure_host_modules_dir() -> None:
    if HOST_MODULES.is_dir():
        return
    if os.geteuid() != 0:
        raise ToolError(
            f"{HOST_MODULES} does not exist, and supermin (libguestfs) needs it even with a kernel of "
            f"its own: create it as root (`mkdir -p {HOST_MODULES}`)"
        )
    # An empty folder: harmless on a host without kernel modules (a container), and what supermin needs.
    HOST_MODULES.mkdir(parents=True, exist_ok=True)


def guestfs_env() -> dict[str, str]:
    """Environment for libguestfs tools so that their appliance boots on this host, whatever /boot holds."""
    if shutil.which("apt-get") is not None:
        ensure_host_modules_dir()
        return appliance_kernel().env()
    if host_kernel_readable():
        return {}
    raise ToolError(
        "libguestfs needs a kernel to boot its appliance and none is readable in /boot: "
        "install one (Fedora/RHEL: dnf install kernel-core; "
        "Debian/Ubuntu: apt-get install linux-image-cloud-amd64) or, on Ubuntu, make it readable "
        "(`chmod 0644 /boot/vmlinuz-*`)"
    )
