"""The export format `pxe`: what a PXE server (dnsmasq, cobbler, foreman) needs to install this image's OS
on a physical machine with the same kickstart the verified build was installed with.

    <name>.pxe/
      tftp/pxelinux.0, ldlinux.c32        BIOS: Debian's pxelinux (syslinux)
      tftp/pxelinux.cfg/default           serial + VGA console, one entry: the installer + kickstart URL
      tftp/grubx64.efi, grub/grub.cfg     UEFI: a GRUB network image (grub-mkimage: efinet, tftp) + menu
      tftp/<name>/vmlinuz, initrd.img     the installer kernel and initrd (the medium's images/pxeboot)
      http/<name>/                        the install tree (the medium's files): inst.repo=<base_url>/<name>/
      http/ks/<name>.ks                   the kickstart as served to the build, `cdrom` -> `url --url=...`
      README.txt                          how to serve it: dnsmasq, a web server, cobbler distro/profile add

The tree's URLs come from the spec's `pxe.base_url` (where http/ will be served). It is built under a temp
name and renamed into place with the other formats, or not at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from factory.errors import ExportError, ToolError
from factory.host import tools
from factory.spec import Spec

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
GRUB_EFI_MODULES = Path("/usr/lib/grub/x86_64-efi")
# Enough GRUB for a network boot: EFI network + TFTP/HTTP, the menu, Linux, serial console.
GRUB_MODULES = (
    "normal", "configfile", "echo", "test", "linux", "efinet", "net", "tftp", "http", "serial", "terminal",
    "all_video", "gzio", "part_msdos", "part_gpt", "ext2", "search", "sleep",
)  # fmt: skip
PXEBOOT = ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
XORRISO_TIMEOUT_S = 3600
CDROM_LINE = re.compile(r"^\s*cdrom\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PxeTree:
    path: Path  # the staged tree
    digest: str  # sha256 over every file's path and sha256, in sorted order
    size: int
    kernel_args: str
    files: int


def boot_args(spec: Spec, base_url: str) -> str:
    args = [
        f"initrd={spec.name}/initrd.img",
        f"inst.ks={base_url}/ks/{spec.name}.ks",
        f"inst.repo={base_url}/{spec.name}/",
        "ip=dhcp",
        "inst.text",
        "console=tty0",
        "console=ttyS0,115200",
        *(spec.pxe.extra_args if spec.pxe else ()),
    ]
    return " ".join(args)


def pxelinux_cfg(spec: Spec, args: str) -> str:
    return (
        "# image-factory: PXE (BIOS) boot of the installer with the image's kickstart\n"
        "serial 0 115200\n"
        "default install\n"
        "prompt 0\n"
        "timeout 50\n"
        "label install\n"
        f"  kernel {spec.name}/vmlinuz\n"
        f"  append {args}\n"
    )


def grub_cfg(spec: Spec, args: str) -> str:
    linux_args = " ".join(a for a in args.split() if not a.startswith("initrd="))
    return (
        "# image-factory: PXE (UEFI) boot of the installer with the image's kickstart\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input console serial\n"
        "terminal_output console serial\n"
        "set timeout=5\n"
        f"menuentry 'Install {spec.name}' {{\n"
        f"  linux /{spec.name}/vmlinuz {linux_args}\n"
        f"  initrd /{spec.name}/initrd.img\n"
        "}\n"
    )


def pxe_kickstart(text: str, repo_url: str) -> str:
    """The kickstart for a network install: its `cdrom` install source becomes the HTTP tree."""
    if CDROM_LINE.search(text):
        return CDROM_LINE.sub(f"url --url={repo_url}", text, count=1)
    return text  # no install source command: anaconda uses inst.repo


def readme(spec: Spec, base_url: str, args: str) -> str:
    n = spec.name
    return f"""PXE tree for {n} (made by image-factory)

  tftp/   serve over TFTP: pxelinux.0 (BIOS), grubx64.efi (UEFI), the installer kernel and initrd
  http/   serve over HTTP so that {base_url}/ is this folder: the install tree ({n}/) and the kickstart
          (ks/{n}.ks, which holds the root password hash: serve it to the install network only)

Every URL in the boot configs points to {base_url} (the spec's pxe.base_url).

1. HTTP, for example:
     python3 -m http.server --directory http 8080
2. DHCP + TFTP with dnsmasq (proxy DHCP beside an existing DHCP server on 192.0.2.0/24):
     dnsmasq --no-daemon --port=0 --enable-tftp --tftp-root="$PWD/tftp" \\
       --dhcp-range=192.0.2.0,proxy --pxe-service=x86PC,"Install {n}",pxelinux \\
       --pxe-service=X86-64_EFI,"Install {n} (UEFI)",grubx64.efi
   or as the DHCP server itself:
     dnsmasq --no-daemon --port=0 --enable-tftp --tftp-root="$PWD/tftp" \\
       --dhcp-range=192.0.2.100,192.0.2.200,12h \\
       --dhcp-match=set:efi64,option:client-arch,7 --dhcp-boot=tag:efi64,grubx64.efi \\
       --dhcp-boot=tag:!efi64,pxelinux.0
3. Cobbler (it serves its own TFTP and DHCP; register the installer and the kickstart):
     cobbler distro add --name={n} --arch=x86_64 --breed=redhat --os-version=rhel7 \\
       --kernel="$PWD/tftp/{n}/vmlinuz" --initrd="$PWD/tftp/{n}/initrd.img" \\
       --kernel-options="inst.repo={base_url}/{n}/ inst.text console=ttyS0,115200"
     cobbler profile add --name={n} --distro={n} --autoinstall="$PWD/http/ks/{n}.ks"
       (cobbler 2.x: --kickstart= instead of --autoinstall=)
     cobbler sync

The installer boots with:
  {args}
"""


def grub_efi_image(out: Path) -> Path:
    """A GRUB EFI network image: loaded over TFTP, it reads grub/grub.cfg from the same TFTP root."""
    if not GRUB_EFI_MODULES.is_dir():
        raise ToolError(
            f"{GRUB_EFI_MODULES} not found: install it (Debian/Ubuntu: apt-get install grub-efi-amd64-bin)"
        )
    tools.run(
        ["grub-mkimage", "-O", "x86_64-efi", "-d", GRUB_EFI_MODULES, "-p", "/grub", "-o", out, *GRUB_MODULES],
        timeout=120,
    )
    return out


def _extract(iso: Path, src: str, dest: Path) -> None:
    tools.run(
        ["xorriso", "-osirrox", "on", "-indev", iso, "-extract", src, dest],
        timeout=XORRISO_TIMEOUT_S,
    )


def _need(path: Path, package: str) -> Path:
    if not path.is_file():
        raise ToolError(f"{path} not found: install it (Debian/Ubuntu: apt-get install {package})")
    return path


def _writable(tree: Path) -> None:
    # xorriso extracts the medium's read-only modes; the tree must stay removable and replaceable.
    for root, dirs, _ in os.walk(tree):
        for d in dirs:
            os.chmod(Path(root) / d, 0o755)
    os.chmod(tree, 0o755)


def tree_digest(tree: Path) -> tuple[str, int, int]:
    h = hashlib.sha256()
    size = files = 0
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        data = hashlib.sha256(path.read_bytes()).hexdigest()
        h.update(f"{path.relative_to(tree)}\0{data}\n".encode())
        size += path.stat().st_size
        files += 1
    return h.hexdigest(), size, files


def stage_pxe(spec: Spec, iso: Path, kickstart_text: str, staging: Path) -> PxeTree:
    """Build the PXE tree into `staging` (fresh, owned by the caller) from the install medium `iso`."""
    if spec.pxe is None:
        raise ExportError(f"{spec.source}: export: pxe needs a `pxe:` section with base_url")
    if not iso.is_file():
        raise ExportError(f"{iso}: the install medium is gone (re-run the media stage)")
    base_url = spec.pxe.base_url.rstrip("/")
    n = spec.name
    tftp, http = staging / "tftp", staging / "http"
    boot = staging / "pxeboot"
    boot.mkdir(parents=True)
    # The pxeboot files first: a medium without them fails in seconds, before a DVD is copied.
    proc = tools.run(
        ["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/images/pxeboot", boot],
        timeout=XORRISO_TIMEOUT_S,
        check=False,
    )
    missing = [p for p in PXEBOOT if not (boot / Path(p).name).is_file()]
    if proc.returncode != 0 or missing:
        raise ExportError(
            f"{iso}: the medium has no {' and '.join(missing or PXEBOOT)}: a PXE tree needs the installer's "
            "network boot files (EL 7 media carry images/pxeboot/vmlinuz and initrd.img); drop pxe from "
            "`export` or use a medium that has them"
        )
    (tftp / n).mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(boot / name, tftp / n / name)
    shutil.rmtree(boot)
    shutil.copyfile(_need(PXELINUX, "pxelinux"), tftp / "pxelinux.0")
    shutil.copyfile(_need(LDLINUX, "syslinux-common"), tftp / "ldlinux.c32")
    args = boot_args(spec, base_url)
    (tftp / "pxelinux.cfg").mkdir()
    (tftp / "pxelinux.cfg" / "default").write_text(pxelinux_cfg(spec, args))
    (tftp / "grub").mkdir()
    (tftp / "grub" / "grub.cfg").write_text(grub_cfg(spec, args))
    grub_efi_image(tftp / "grubx64.efi")
    (http / "ks").mkdir(parents=True)
    _extract(iso, "/", http / n)
    _writable(http / n)
    (http / "ks" / f"{n}.ks").write_text(pxe_kickstart(kickstart_text, f"{base_url}/{n}/"))
    (staging / "README.txt").write_text(readme(spec, base_url, args))
    digest, size, files = tree_digest(staging)
    return PxeTree(path=staging, digest=digest, size=size, kernel_args=args, files=files)
