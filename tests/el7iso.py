"""A small ISO laid out like EL7 install media, with Debian's real isolinux (for media and remaster tests).

Importable from every test folder: tests/ is on sys.path because tests/conftest.py lives there.
"""

from __future__ import annotations

from pathlib import Path

from factory.host import tools

ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
LABEL = "CentOS 7 x86_64"

# The shape of CentOS 7.2's isolinux.cfg: vesamenu, a 60 s timeout, no serial line, media check as default.
EL7_ISOLINUX_CFG = """\
default vesamenu.c32
timeout 600

display boot.msg

menu clear
menu title CentOS 7
menu vshift 8

label linux
  menu label ^Install CentOS 7
  kernel vmlinuz
  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet

label check
  menu label Test this ^media & install CentOS 7
  menu default
  kernel vmlinuz
  append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet
"""

# The shape of CentOS 7.2's EFI/BOOT/grub.cfg (lorax 19.6.66): the media check ("1") as default, a 60 s
# timeout, the disc by label, linuxefi/initrdefi, a troubleshooting submenu.
EL7_GRUB_CFG = """\
set default="1"

function load_video {
  insmod efi_gop
  insmod efi_uga
  insmod video_bochs
  insmod video_cirrus
  insmod all_video
}

load_video
set gfxpayload=keep
insmod gzio
insmod part_gpt
insmod ext2

set timeout=60
### END /etc/grub.d/00_header ###

search --no-floppy --set=root -l 'CentOS 7 x86_64'

### BEGIN /etc/grub.d/10_linux ###
menuentry 'Install CentOS 7' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet
\tinitrdefi /images/pxeboot/initrd.img
}
menuentry 'Test this media & install CentOS 7' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet
\tinitrdefi /images/pxeboot/initrd.img
}
submenu 'Troubleshooting -->' {
\tmenuentry 'Install CentOS 7 in basic graphics mode' --class fedora --class gnu-linux --class os {
\t\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 xdriver=vesa nomodeset
\t\tinitrdefi /images/pxeboot/initrd.img
\t}
\tmenuentry 'Rescue a CentOS system' --class fedora --class gnu-linux --class gnu --class os {
\t\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rescue quiet
\t\tinitrdefi /images/pxeboot/initrd.img
\t}
}
"""

# The grub.cfg inside images/efiboot.img: what UEFI CD boot really reads (grub then finds the disc by label).
EL7_EFIBOOT_GRUB_CFG = """\
set default="1"

function load_video {
  insmod efi_gop
  insmod efi_uga
}

insmod part_gpt
insmod ext2

set timeout=60
search --no-floppy --set=root -l 'CentOS 7 x86_64'

menuentry 'Install CentOS Linux 7' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet
\tinitrdefi /images/pxeboot/initrd.img
}
menuentry 'Test this media & install CentOS Linux 7' --class fedora --class gnu-linux --class gnu --class os {
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet
\tinitrdefi /images/pxeboot/initrd.img
}
"""
EFIBOOT_KIB = 1440


def make_efiboot_img(work: Path, grub_cfg: str = EL7_EFIBOOT_GRUB_CFG) -> Path:
    """A FAT image like EL7's images/efiboot.img: EFI/BOOT/{BOOTX64.EFI,grubx64.efi,grub.cfg} (stubs)."""
    img = work / "efiboot.img"
    tools.run(["mkfs.fat", "-C", "-n", "ANACONDA", img, str(EFIBOOT_KIB)], timeout=60)
    tools.run(["mmd", "-i", img, "::EFI", "::EFI/BOOT"], timeout=60)
    files = {
        "BOOTX64.EFI": b"not an EFI binary\n",
        "grubx64.efi": b"not grub\n",
        "grub.cfg": grub_cfg.encode(),
    }
    for name, data in files.items():
        (work / name).write_bytes(data)
        tools.run(["mcopy", "-i", img, work / name, f"::EFI/BOOT/{name}"], timeout=60)
    return img


def make_el7_iso(work: Path, *, label: str = LABEL, joliet: bool = True, efiboot: bool = True) -> Path:
    """Build `work/el7.iso`: isolinux/{isolinux.bin,ldlinux.c32,isolinux.cfg,vmlinuz,initrd.img},
    EFI/BOOT/grub.cfg, .discinfo and a file with a long mixed-case name (Rock Ridge/Joliet only).

    With `efiboot`, images/efiboot.img (see make_efiboot_img) is the El Torito EFI boot image too, as on EL7.
    """
    tree = work / "tree"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "EFI" / "BOOT").mkdir(parents=True)
    (tree / "images" / "pxeboot").mkdir(parents=True)
    (tree / "isolinux" / "isolinux.bin").write_bytes(ISOLINUX_BIN.read_bytes())
    (tree / "isolinux" / "ldlinux.c32").write_bytes(LDLINUX_C32.read_bytes())
    (tree / "isolinux" / "isolinux.cfg").write_text(EL7_ISOLINUX_CFG)
    (tree / "isolinux" / "boot.msg").write_text("\nCentOS 7 installer\n")
    (tree / "isolinux" / "vmlinuz").write_bytes(b"not a kernel\n")
    (tree / "isolinux" / "initrd.img").write_bytes(b"not an initrd\n")
    (tree / "EFI" / "BOOT" / "grub.cfg").write_text(EL7_GRUB_CFG)
    (tree / "images" / "pxeboot" / "vmlinuz").write_bytes(b"not a kernel\n")
    (tree / ".discinfo").write_text("1446838339.555000\n7\nx86_64\n")
    (tree / "RPM-GPG-KEY-CentOS-Testing-7").write_text("key\n")
    efi_args: list[str | Path] = []
    if efiboot:
        fat = work / "fat"
        fat.mkdir()
        make_efiboot_img(fat).rename(tree / "images" / "efiboot.img")
        efi_args = ["-eltorito-alt-boot", "-e", "images/efiboot.img", "-no-emul-boot"]
    iso = work / "el7.iso"
    tools.run(
        [
            "xorriso", "-as", "mkisofs", "-quiet", "-R", *(["-J"] if joliet else []), "-V", label,
            "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
            "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", *efi_args,
            "-o", iso, tree,
        ],
        timeout=120,
    )  # fmt: skip
    return iso
