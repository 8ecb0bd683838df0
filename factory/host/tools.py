"""The one place external programs run: logs the command, applies a timeout, turns failure into ToolError."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from factory.errors import ToolError

log = logging.getLogger("factory.host.tools")

# Where each host tool comes from, for the "install this" hint (Debian/Ubuntu, Fedora/RHEL).
PACKAGES: dict[str, tuple[str, str]] = {
    "qemu-system-x86_64": ("qemu-system-x86", "qemu-system-x86-core"),
    "qemu-img": ("qemu-utils", "qemu-img"),
    "xorriso": ("xorriso", "xorriso"),
    "mmdebstrap": ("mmdebstrap", "mmdebstrap"),
    "mkfs.ext4": ("e2fsprogs", "e2fsprogs"),
    "cpio": ("cpio", "cpio"),
    "ssh": ("openssh-client", "openssh-clients"),
    "ssh-keygen": ("openssh-client", "openssh-clients"),
    "qemu-io": ("qemu-utils", "qemu-img"),
    # Seal's offline re-check of ext4 (the testbed) reads the filesystem with debugfs.
    "debugfs": ("e2fsprogs", "e2fsprogs"),
    # libguestfs's appliance kernel is unpacked from a Debian package and indexed with depmod.
    "depmod": ("kmod", "kmod"),
    "dpkg-deb": ("dpkg", "dpkg"),
    # Seal's offline re-check reads an xfs/LVM sealed disk (EL) with libguestfs.
    "guestfish": ("libguestfs-tools", "guestfs-tools"),
    # The OCI export of a disk that is not one ext filesystem (xfs, LVM: EL 7) reads it with virt-tar-out.
    "virt-tar-out": ("libguestfs-tools", "guestfs-tools"),
    "sfdisk": ("fdisk", "util-linux"),
    "skopeo": ("skopeo", "skopeo"),
    "umoci": ("umoci", "umoci"),
    "docker-registry": ("docker-registry", "docker-distribution"),
    # The serial remaster edits grub.cfg inside EL7's FAT EFI boot image (images/efiboot.img) with mtools;
    # the test ISO fixture builds such an image with mkfs.fat + mmd.
    "mcopy": ("mtools", "mtools"),
    "mformat": ("mtools", "mtools"),
    # The raw export's block map (bmap-tools: `bmaptool create`, `bmaptool copy` to a physical disk).
    "bmaptool": ("bmap-tools", "bmap-tools"),
    "mmd": ("mtools", "mtools"),
    "mkfs.fat": ("dosfstools", "dosfstools"),
    # The testbed's UEFI boot loader: grub-mkimage links BOOTX64.EFI from grub-efi-amd64-bin's modules.
    "grub-mkimage": ("grub-common", "grub2-tools"),
    # The compliance gate scans the sealed image offline with OpenSCAP, against SCAP Security Guide content
    # (Fedora/RHEL: scap-security-guide has the EL 7 datastreams under the same path).
    "oscap": ("openscap-scanner", "openscap-scanner"),
    "/usr/share/xml/scap/ssg/content/ssg-centos7-ds.xml": ("ssg-nondebian", "scap-security-guide"),
    "/usr/share/xml/scap/ssg/content/ssg-ol7-ds.xml": ("ssg-nondebian", "scap-security-guide"),
    # Files, not programs (hostdeps checks an absolute path for existence): the testbed's BIOS boot loader.
    # Fedora/RHEL ship them as /usr/share/syslinux/{isolinux.bin,ldlinux.c32}.
    "/usr/lib/ISOLINUX/isolinux.bin": ("isolinux", "syslinux"),
    "/usr/lib/syslinux/modules/bios/ldlinux.c32": ("syslinux-common", "syslinux"),
    # Network boot (export: [pxe], boot.mode: pxe): pxelinux for BIOS, GRUB's EFI modules for UEFI.
    "/usr/lib/PXELINUX/pxelinux.0": ("pxelinux", "syslinux-tftpboot"),
    "/usr/lib/grub/x86_64-efi": ("grub-efi-amd64-bin", "grub2-efi-x64-modules"),
    # UEFI firmware for vm.firmware: uefi (Fedora/RHEL: /usr/share/edk2/ovmf/).
    "/usr/share/ovmf/OVMF.fd": ("ovmf", "edk2-ovmf"),
}


def which(program: str) -> Path:
    """Absolute path of a host program, or a ToolError naming the packages that provide it."""
    found = shutil.which(program)
    if found is None:
        deb, rpm = PACKAGES.get(program, (program, program))
        raise ToolError(
            f"{program} not found on PATH: install it (Debian/Ubuntu: apt-get install {deb}; "
            f"Fedora/RHEL: dnf install {rpm}), or run with --install-host-deps as root"
        )
    return Path(found)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float | None = 600,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    capture: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to completion. On failure raise ToolError with the tail of its stderr."""
    args = [os.fspath(a) for a in argv]
    program = which(args[0])
    args[0] = str(program)
    log.debug("run: %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        stderr = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
        tail = " | ".join(stderr[-3:]) if stderr else "no error output"
        raise ToolError(f"{Path(args[0]).name} failed with exit status {proc.returncode}: {tail}")
    return proc


def version(program: str, flag: str = "--version") -> str:
    """First line of `program --version`, or 'missing'."""
    try:
        out = run([program, flag], timeout=30, check=False).stdout
    except ToolError:
        return "missing"
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "unknown"
