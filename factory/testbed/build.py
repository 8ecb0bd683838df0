"""Build the testbed ISO: a tiny EL7-shaped install medium made only from Debian packages.

    build_testbed() -> Testbed(iso=..., sha256=..., volume_label="TESTBED 1 x86_64", kernel_version=...)

The result is cached under cache_dir()/testbed/<content-hash>/, where the hash covers this package's
code and scripts, the package lists and the Debian versions apt resolves them to: change any of them and
the next call rebuilds; otherwise the cached ISO comes back at once. A file lock serialises builds and
the ISO appears under its final name only when complete (temp name + rename).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from factory.core import digest as digest_mod
from factory.core import paths
from factory.errors import ToolError
from factory.host import supermin, tools
from factory.testbed import cpio, kmod, layer, tarorder

log = logging.getLogger("factory.testbed")

VOLUME_LABEL = "TESTBED 1 x86_64"
# Bumped when the layout changes in a way the hashed inputs would not show.
# 3: UEFI boot (GRUB in images/efiboot.img as the El Torito EFI entry, EFI/BOOT/grub.cfg), as on EL 7;
#    the installer initramfs carries `ena` and `modules.builtin` (AWS's driver checks).
# 5: cloud-init in the base system; the installed system mounts root=LABEL=root (virtio or NVMe disk);
#    vmxnet3 and vmw_pvscsi among the modules.
# 6: cloud-init moved out of the base into images/install-cloud.img, unpacked only when %packages names it.
FORMAT = 6
SUITE = "bookworm"
DATA = Path(__file__).parent

# Unpacked with dpkg -x into the installer's initramfs and the ISO's boot files.
MEDIA_PACKAGES = (
    "busybox-static",
    "isolinux",
    "syslinux-common",
    # mke2fs for ext4 (busybox's makes ext2 only) and the libraries it links.
    "e2fsprogs",
    "libext2fs2",
    "libcom-err2",
    "libblkid1",
    "libuuid1",
    "libc6",
    # GRUB's EFI modules: grub-mkimage builds the UEFI boot loader (EFI/BOOT/BOOTX64.EFI) from them.
    "grub-efi-amd64-bin",
)
# The base system (images/install.img): sysvinit boots in seconds under TCG where systemd took 32 s
# to a login prompt; busybox provides udhcpc for the EL7-style network service.
BASE_PACKAGES = ("sysvinit-core", "openssh-server", "busybox", "extlinux", "syslinux-common", "e2fsprogs")
# The cloud layer (images/install-cloud.img, factory.testbed.layer): cloud-init (Debian's, with growpart
# from cloud-guest-utils and sudo for its default user) lets the target boot profiles of verify run for
# real (Ec2 / ConfigDrive / OVF picked by ds-identify). Apart from the base because python3 and cloud-init
# are 30 MB more to unpack under TCG: only a kickstart whose %packages names one of them pays for it.
CLOUD_PACKAGES = ("cloud-init", "cloud-guest-utils", "sudo")
# Real, small .debs for %packages, shipped under Packages/ (their dependencies are in the base).
EXTRA_PACKAGES = ("tree", "less")
# Loaded explicitly, in dependency order, by the installer and by the installed system's boot.
MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_scsi",
    "sd_mod",
    "ata_piix",  # the CD-ROM of `-machine pc` (the cloud kernel has no ahci: use pc, not q35)
    "sr_mod",
    "cdrom",
    "isofs",
    # Not needed under QEMU: carried (and loaded) because the testbed spec says aws.ena: true, and the
    # acceptance suite checks that the image has the driver that flag promises (nvme is built in).
    "ena",
    # Likewise for the vsphere target boot: VMware's paravirtual NIC and SCSI drivers, which a VM imported
    # into vSphere boots with (vmxnet3, pvscsi); the acceptance suite checks the image carries them.
    "vmxnet3",
    "vmw_pvscsi",
)
SCRIPTS = (
    "installer.sh",
    "ksparse.sh",
    "udhcpc.sh",
    "rootfs/customize.sh",
    "rootfs/network.sh",
    "rootfs/sshd-keygen.sh",
    "rootfs/mountkernfs.sh",
    "rootfs/mountdevsubfs.sh",
    "rootfs/mounts-lib.sh",
    "rootfs/cloud-init-default.sh",
    "rootfs/cloud-testbed.cfg",
    "build.py",
    "cpio.py",
    "kmod.py",
    "tarorder.py",
    "layer.py",
)
# The host program that links the GRUB image; its version is hashed with the package versions (it must
# match the modules' GRUB version, and a new one makes a different BOOTX64.EFI).
GRUB_MKIMAGE = "grub-mkimage"
# Built into BOOTX64.EFI: the FAT boot image holds no module directory (EL's grubx64.efi is monolithic too).
GRUB_MODULES = (
    "normal", "configfile", "echo", "test", "boot", "linuxefi", "linux", "fat", "iso9660", "part_msdos",
    "part_gpt", "search", "search_label", "serial", "terminal", "terminfo", "efi_gop", "all_video",
)  # fmt: skip
# The El Torito EFI image (FAT, like lorax's efiboot.img) in KiB: room for BOOTX64.EFI (~0.7 MiB) + grub.cfg.
EFIBOOT_KIB = 2048
# The shape of EL 7.2's EFI/BOOT/grub.cfg (lorax 19.6.66): the media check as default ("1"), a 60 s
# timeout, the disc found by its label, linuxefi/initrdefi, a troubleshooting submenu. The same file is
# EFI/BOOT/grub.cfg in images/efiboot.img (what UEFI CD boot reads) and in the ISO tree.
GRUB_CFG = """\
set default="1"

function load_video {
  insmod all_video
}

set timeout=60
search --no-floppy --set=root -l 'TESTBED 1 x86_64'

menuentry 'Install TESTBED 1' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 quiet
\tinitrdefi /images/pxeboot/initrd.img
}
menuentry 'Test this media & install TESTBED 1' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 rd.live.check quiet
\tinitrdefi /images/pxeboot/initrd.img
}
submenu 'Troubleshooting -->' {
\tmenuentry 'Rescue a TESTBED system' --class fedora --class gnu-linux --class gnu --class os {
\t\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 rescue quiet
\t\tinitrdefi /images/pxeboot/initrd.img
\t}
}
"""
ISOLINUX_CFG = """\
default linux
timeout 600

label linux
  menu label ^Install TESTBED 1
  kernel vmlinuz
  append initrd=initrd.img inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 quiet
"""


@dataclass(frozen=True)
class Testbed:
    """A built testbed medium. `kernel`/`initrd` are copies of isolinux/vmlinuz and initrd.img."""

    __test__ = False  # not a pytest test class, despite the name

    iso: Path
    sha256: str
    volume_label: str
    kernel_version: str
    kernel: Path
    initrd: Path
    content_hash: str
    base_packages: int
    extra_packages: tuple[str, ...]
    cloud_packages: int


@contextmanager
def _step(name: str) -> Iterator[None]:
    start = time.monotonic()
    log.info("testbed: %s", name)
    yield
    log.info("testbed: %s done in %.1f s", name, time.monotonic() - start)


def _apt_versions(packages: list[str]) -> dict[str, str]:
    """Candidate version of each package, as apt on this host resolves it."""
    out = tools.run(["apt-cache", "show", "--no-all-versions", *packages], timeout=120).stdout.decode()
    versions: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            versions[name] = line.split(": ", 1)[1]
    missing = sorted(set(packages) - set(versions))
    if missing:
        raise ToolError(f"apt has no candidate for {', '.join(missing)}: run apt-get update")
    return versions


def content_hash(scripts: dict[str, bytes], versions: dict[str, str], *, part: str = "iso") -> str:
    """Hash of everything the ISO (or its `part`) is made from (pure: unit-tested)."""
    doc = {
        "part": part,
        "format": FORMAT,
        "suite": SUITE,
        "label": VOLUME_LABEL,
        "media": list(MEDIA_PACKAGES),
        "base": list(BASE_PACKAGES),
        "cloud": list(CLOUD_PACKAGES),
        "extra": list(EXTRA_PACKAGES),
        "modules": list(MODULES),
        "scripts": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(scripts.items())},
        "versions": dict(sorted(versions.items())),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _read_scripts() -> dict[str, bytes]:
    return {name: (DATA / name).read_bytes() for name in SCRIPTS}


def build_testbed(cache: Path | None = None, *, force: bool = False) -> Testbed:
    """Build (or reuse from the cache) the testbed ISO and return where it is."""
    kernel_pkg = supermin.kernel_package()
    versions = _apt_versions([kernel_pkg, *MEDIA_PACKAGES, *BASE_PACKAGES, *CLOUD_PACKAGES, *EXTRA_PACKAGES])
    versions[GRUB_MKIMAGE] = _grub_mkimage_version()
    digest = content_hash(_read_scripts(), versions)
    root = (cache or paths.cache_dir()) / "testbed"
    root.mkdir(parents=True, exist_ok=True)
    final = root / digest
    meta = final / "testbed.json"
    with FileLock(str(root / f"{digest}.lock"), timeout=900):
        if meta.exists() and not force:
            return _load(meta)
        with tempfile.TemporaryDirectory(prefix=f"{digest[:12]}.", dir=root) as tmp:
            testbed = _build(Path(tmp), final, digest, kernel_pkg, versions)
        return testbed


def _grub_mkimage_version() -> str:
    """'grub-mkimage (GRUB) 2.06-13+deb12u2' (a ToolError naming grub-common when it is missing)."""
    out = tools.run([GRUB_MKIMAGE, "--version"], timeout=30).stdout.decode(errors="replace").strip()
    return out.splitlines()[0] if out else "unknown"


def _efiboot(unpacked: Path, work: Path) -> Path:
    """images/efiboot.img: a FAT image with EFI/BOOT/BOOTX64.EFI (GRUB, all modules built in, $prefix
    /EFI/BOOT on the FAT image itself) and EFI/BOOT/grub.cfg, the layout UEFI CD boot of EL media reads."""
    efi = work / "BOOTX64.EFI"
    tools.run(
        [
            GRUB_MKIMAGE, "-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", efi,
            "-d", unpacked / "usr/lib/grub/x86_64-efi", *GRUB_MODULES,
        ],
        timeout=120,
    )  # fmt: skip
    cfg = work / "grub.cfg"
    cfg.write_text(GRUB_CFG)
    img = work / "efiboot.img"
    # A fixed volume id: the image's bytes depend only on its inputs.
    tools.run(["mkfs.fat", "-C", "-i", "7e571bed", "-n", "ANACONDA", img, str(EFIBOOT_KIB)], timeout=60)
    tools.run(["mmd", "-i", img, "::EFI", "::EFI/BOOT"], timeout=60)
    tools.run(["mcopy", "-i", img, efi, cfg, "::EFI/BOOT/"], timeout=60)
    return img


def _load(meta: Path) -> Testbed:
    doc = json.loads(meta.read_text())
    for key in ("iso", "kernel", "initrd"):
        doc[key] = meta.parent / doc[key]
    doc["extra_packages"] = tuple(doc["extra_packages"])
    return Testbed(**doc)


def _build(work: Path, final: Path, digest: str, kernel_pkg: str, versions: dict[str, str]) -> Testbed:
    debs = work / "debs"
    debs.mkdir()
    unpacked = work / "unpacked"
    tree = work / "iso"
    with _step("download Debian packages"):
        pins = [f"{p}={versions[p]}" for p in (kernel_pkg, *MEDIA_PACKAGES, *EXTRA_PACKAGES)]
        tools.run(["apt-get", "download", *pins], cwd=debs, timeout=600)
        for deb in sorted(debs.glob("*.deb")):
            # One tree for all: the initramfs picks files out of it.
            tools.run(["dpkg-deb", "-x", deb, unpacked], timeout=300)
    kernel_version = kernel_pkg.removeprefix("linux-image-")
    rootfs, base_lines = _base_rootfs(work, final.parent, versions, BASE_PACKAGES)
    cloud, cloud_lines, cloud_removed = _cloud_layer(work, final.parent, versions, rootfs, base_lines)
    with _step("installer initramfs"):
        initrd = gzip.compress(
            cpio.archive(_initramfs_entries(unpacked, work / "initramfs", kernel_version)), 6
        )
    with _step("ISO tree"):
        iso_linux = tree / "isolinux"
        pxe = tree / "images" / "pxeboot"
        iso_linux.mkdir(parents=True)
        pxe.mkdir(parents=True)
        (tree / "Packages").mkdir()
        vmlinuz = unpacked / "boot" / f"vmlinuz-{kernel_version}"
        for d in (iso_linux, pxe):
            shutil.copyfile(vmlinuz, d / "vmlinuz")
            (d / "initrd.img").write_bytes(initrd)
        shutil.copyfile(unpacked / "usr/lib/ISOLINUX/isolinux.bin", iso_linux / "isolinux.bin")
        shutil.copyfile(unpacked / "usr/lib/syslinux/modules/bios/ldlinux.c32", iso_linux / "ldlinux.c32")
        (iso_linux / "isolinux.cfg").write_text(ISOLINUX_CFG)
        (tree / "EFI" / "BOOT").mkdir(parents=True)
        (tree / "EFI" / "BOOT" / "grub.cfg").write_text(GRUB_CFG)
        shutil.copyfile(_efiboot(unpacked, work), tree / "images" / "efiboot.img")
        shutil.copyfile(rootfs, tree / "images" / "install.img")
        (tree / "images" / "install.pkgs").write_text("".join(f"{line}\n" for line in base_lines))
        shutil.copyfile(cloud, tree / "images" / "install-cloud.img")
        (tree / "images" / "install-cloud.pkgs").write_text("".join(f"{line}\n" for line in cloud_lines))
        (tree / "images" / "install-cloud.remove").write_text("".join(f"{p}\n" for p in cloud_removed))
        for name in EXTRA_PACKAGES:
            for deb in debs.glob(f"{name}_*.deb"):
                shutil.copyfile(deb, tree / "Packages" / deb.name)
        # Like EL7's: a timestamp, the release, the architecture (fixed: the ISO stays reproducible).
        (tree / ".discinfo").write_text("1700000000.000000\n1\nx86_64\n")
    with _step("ISO image (xorriso)"):
        iso_tmp = work / "testbed.iso"
        tools.run(
            [
                "xorriso",
                "-as",
                "mkisofs",
                "-o",
                iso_tmp,
                "-V",
                VOLUME_LABEL,
                "-R",
                "-J",
                "-isohybrid-mbr",
                unpacked / "usr/lib/ISOLINUX/isohdpfx.bin",
                "-b",
                "isolinux/isolinux.bin",
                "-c",
                "isolinux/boot.cat",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-info-table",
                # The UEFI entry, as on EL media: OVMF boots images/efiboot.img's BOOTX64.EFI.
                "-eltorito-alt-boot",
                "-e",
                "images/efiboot.img",
                "-no-emul-boot",
                tree,
            ],
            timeout=300,
        )
    # Publish: the files first, the metadata (what _load trusts) last, each by rename.
    final.mkdir(parents=True, exist_ok=True)
    (work / "vmlinuz").write_bytes(vmlinuz.read_bytes())
    (work / "initrd.img").write_bytes(initrd)
    for name in ("vmlinuz", "initrd.img", "testbed.iso"):
        (work / name).replace(final / name)
    testbed = Testbed(
        iso=final / "testbed.iso",
        sha256=digest_mod.sha256_file(final / "testbed.iso"),
        volume_label=VOLUME_LABEL,
        kernel_version=kernel_version,
        kernel=final / "vmlinuz",
        initrd=final / "initrd.img",
        content_hash=digest,
        base_packages=len(base_lines),
        extra_packages=EXTRA_PACKAGES,
        cloud_packages=len(cloud_lines),
    )
    doc = asdict(testbed)
    for key in ("iso", "kernel", "initrd"):
        doc[key] = Path(doc[key]).name
    meta_tmp = work / "testbed.json"
    meta_tmp.write_text(json.dumps(doc, indent=2) + "\n")
    meta_tmp.replace(final / "testbed.json")
    return testbed


def _initramfs_entries(unpacked: Path, root: Path, kernel_version: str) -> list[cpio.Entry]:
    """Lay out the installer's initramfs in `root` and return its archive entries."""
    for d in (
        "bin",
        "sbin",
        "etc/testbed",
        "lib",
        "lib64",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "mnt",
        "root",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    busybox = root / "bin" / "busybox"
    shutil.copyfile(unpacked / "bin" / "busybox", busybox)
    busybox.chmod(0o755)
    applets = tools.run([busybox, "--list"], timeout=30).stdout.decode().split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    # Real mke2fs: busybox's makes ext2 only. Its libraries come from the same Debian packages.
    shutil.copyfile(unpacked / "sbin" / "mke2fs", root / "sbin" / "mke2fs")
    (root / "sbin" / "mke2fs").chmod(0o755)
    shutil.copyfile(unpacked / "etc" / "mke2fs.conf", root / "etc" / "mke2fs.conf")
    libdir = root / "lib" / "x86_64-linux-gnu"
    libdir.mkdir()
    for pattern in (
        "libext2fs.so.2*",
        "libcom_err.so.2*",
        "libblkid.so.1*",
        "libuuid.so.1*",
        "libe2p.so.2*",
        "libc.so.6",
    ):
        # bookworm is mid-/usr-merge: util-linux's libraries are in /usr/lib, e2fsprogs' in /lib.
        for lib in [
            *(unpacked / "lib/x86_64-linux-gnu").glob(pattern),
            *(unpacked / "usr/lib/x86_64-linux-gnu").glob(pattern),
        ]:
            target = libdir / lib.name
            if lib.is_symlink():
                target.symlink_to(lib.readlink())
            else:
                shutil.copyfile(lib, target)
    shutil.copyfile(
        unpacked / "lib" / "x86_64-linux-gnu" / "ld-linux-x86-64.so.2", libdir / "ld-linux-x86-64.so.2"
    )
    (libdir / "ld-linux-x86-64.so.2").chmod(0o755)
    (root / "lib64" / "ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    # Kernel modules, in load order.
    kmoddir = unpacked / "lib" / "modules" / kernel_version
    index = kmod.module_index(kmoddir)
    order = kmod.load_order(list(MODULES), index, kmod.builtin_modules(kmoddir))
    lines = []
    for name in order:
        rel = index[name].relative_to(kmoddir)
        (root / "lib/modules" / kernel_version / rel.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(index[name], root / "lib/modules" / kernel_version / rel)
        lines.append(f"{rel.as_posix()}\n")
    (root / "etc/testbed/modules").write_text("".join(lines))
    # What the kernel has built in (nvme, ext4...): the installed system's /lib/modules is this tree, and
    # modules.builtin is how it tells a built-in driver from a missing one.
    shutil.copyfile(kmoddir / "modules.builtin", root / "lib/modules" / kernel_version / "modules.builtin")
    for script in ("ksparse.sh", "udhcpc.sh"):
        shutil.copyfile(DATA / script, root / "etc/testbed" / script)
        (root / "etc/testbed" / script).chmod(0o755)
    shutil.copyfile(DATA / "installer.sh", root / "init")
    (root / "init").chmod(0o755)
    # The kernel opens /dev/console for init before anything mounts devtmpfs.
    console = cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    return [*cpio.tree_entries(root), console]


ROOTFS_SCRIPTS = (
    "rootfs/customize.sh",
    "rootfs/network.sh",
    "rootfs/sshd-keygen.sh",
    "rootfs/mountkernfs.sh",
    "rootfs/mountdevsubfs.sh",
    "rootfs/mounts-lib.sh",
    "rootfs/cloud-init-default.sh",
    "rootfs/cloud-testbed.cfg",
    "udhcpc.sh",
    "tarorder.py",
)


def _base_rootfs(
    work: Path, root: Path, versions: dict[str, str], packages: tuple[str, ...]
) -> tuple[Path, list[str]]:
    """A root filesystem tarball of `packages` (in package order: tarorder) and its install.pkgs lines
    (`package<TAB>marker`), cached apart from the ISO: mmdebstrap is 30 s of the build's 35, and the
    installer script changes far more often than the base system."""
    scripts = {name: (DATA / name).read_bytes() for name in ROOTFS_SCRIPTS}
    digest = content_hash(scripts, {p: versions[p] for p in packages}, part=f"rootfs {' '.join(packages)}")
    cached = root / f"rootfs-{digest}"
    tarball, listing = cached / "install.tar.gz", cached / "packages.txt"
    with FileLock(str(root / f"rootfs-{digest}.lock"), timeout=900):
        if listing.exists():
            return tarball, listing.read_text().splitlines()
        with _step(f"root filesystem of {len(packages)} packages (mmdebstrap)"):
            base_list = work / "base-packages.txt"
            rootfs = work / "install.tar.gz"
            tools.run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    '--aptopt=APT::Install-Recommends "false"',
                    # Documentation is dead weight in a CI guest and slows the unpack under TCG; the
                    # copyright files stay (dpkg applies the include after the exclude): verify's SBOM
                    # reads each package's licenses from them.
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                    "--dpkgopt=path-exclude=/usr/share/locale/*",
                    "--dpkgopt=path-exclude=/usr/share/info/*",
                    f"--include={','.join(packages)}",
                    f'--customize-hook=sh {DATA / "rootfs/customize.sh"} "$1" {DATA} {base_list}',
                    SUITE,
                    rootfs,
                ],
                timeout=900,
            )
        with _step("base tarball in package order"):
            ordered = work / "install-ordered.tar.gz"
            marks = tarorder.reorder(rootfs, ordered, [p for p in base_list.read_text().split() if p])
            lines = work / "install.pkgs"
            lines.write_text("".join(f"{package}\t{marker}\n" for package, marker in marks))
            cached.mkdir(parents=True, exist_ok=True)
            ordered.replace(tarball)
            lines.replace(listing)
    return tarball, listing.read_text().splitlines()


def _cloud_layer(
    work: Path, root: Path, versions: dict[str, str], base: Path, base_lines: list[str]
) -> tuple[Path, list[str], list[str]]:
    """images/install-cloud.img (the base plus CLOUD_PACKAGES, minus the base: layer.write, in package
    order), its install-cloud.pkgs lines and the base paths it removes; cached beside the root filesystems."""
    full, full_lines = _base_rootfs(work, root, versions, (*BASE_PACKAGES, *CLOUD_PACKAGES))
    code = hashlib.sha256((DATA / "layer.py").read_bytes()).hexdigest()
    cached = root / f"{full.parent.name}-layer-{digest_mod.combine(digest_mod.sha256_file(base), code)[:16]}"
    tarball, listing, removals = cached / "layer.tar.gz", cached / "packages.txt", cached / "remove.txt"
    with FileLock(str(cached) + ".lock", timeout=900):
        if listing.exists():
            return tarball, listing.read_text().splitlines(), removals.read_text().splitlines()
        with _step("cloud layer (full system minus base)"):
            delta = work / "cloud-layer.tar.gz"
            removed = layer.write(base, full, delta)
            in_base = {line.split("\t", 1)[0] for line in base_lines}
            added = [name for name in (line.split("\t", 1)[0] for line in full_lines) if name not in in_base]
            ordered = work / "cloud-layer-ordered.tar.gz"
            marks = tarorder.reorder(delta, ordered, added)
            cached.mkdir(parents=True, exist_ok=True)
            removals.write_text("".join(f"{p}\n" for p in removed))
            ordered.replace(tarball)
            listing.write_text("".join(f"{package}\t{marker}\n" for package, marker in marks))
    return tarball, listing.read_text().splitlines(), removals.read_text().splitlines()
