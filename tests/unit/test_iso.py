"""Reading ISOs with pycdlib (Rock Ridge, Joliet, plain ISO 9660) and the serial remaster's edits."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from el7iso import (
    EL7_EFIBOOT_GRUB_CFG,
    EL7_GRUB_CFG,
    EL7_ISOLINUX_CFG,
    LABEL,
    make_efiboot_img,
    make_el7_iso,
)

from factory.core import digest
from factory.errors import MediaError
from factory.host import tools
from factory.stages.media import media


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_el7_iso(tmp_path_factory.mktemp("el7"))


def _plain_iso(work: Path, *, rock_ridge: bool, joliet: bool) -> Path:
    tree = work / "tree"
    (tree / "isolinux").mkdir(parents=True)
    (tree / "isolinux" / "isolinux.cfg").write_text("default linux\n")
    out = work / "x.iso"
    flags = (["-R"] if rock_ridge else []) + (["-J"] if joliet else [])
    tools.run(["xorriso", "-as", "mkisofs", "-quiet", *flags, "-V", "PLAIN", "-o", out, tree], timeout=60)
    return out


@pytest.mark.parametrize(
    ("rock_ridge", "joliet"),
    [
        pytest.param(True, False, id="rock-ridge"),
        pytest.param(False, True, id="joliet-only"),
        pytest.param(False, False, id="iso9660-only"),
    ],
)
def test_read_file_in_every_namespace(tmp_path: Path, rock_ridge: bool, joliet: bool) -> None:
    iso = _plain_iso(tmp_path, rock_ridge=rock_ridge, joliet=joliet)
    dest = media.read_file(iso, "/isolinux/isolinux.cfg", tmp_path / "out" / "isolinux.cfg")
    assert dest.read_text() == "default linux\n"
    assert media.list_dir(iso, "/isolinux") == ["isolinux.cfg"]


def test_read_el7_layout(tmp_path: Path, iso: Path) -> None:
    cfg = media.read_file(iso, "isolinux/isolinux.cfg", tmp_path / "isolinux.cfg")
    assert cfg.read_text() == EL7_ISOLINUX_CFG
    grub = media.read_file(iso, "/EFI/BOOT/grub.cfg", tmp_path / "grub.cfg")
    assert grub.read_text() == EL7_GRUB_CFG
    # A long mixed-case name only exists as such in Rock Ridge / Joliet.
    key = media.read_file(iso, "/RPM-GPG-KEY-CentOS-Testing-7", tmp_path / "key")
    assert key.read_text() == "key\n"
    assert media.list_dir(iso, "/") == [
        ".discinfo",
        "EFI",
        "RPM-GPG-KEY-CentOS-Testing-7",
        "images",
        "isolinux",
    ]
    assert media.volume_label(iso) == LABEL


def test_missing_file_leaves_nothing(tmp_path: Path, iso: Path) -> None:
    with pytest.raises(MediaError, match=r"no file /isolinux/nope.cfg in the ISO"):
        media.read_file(iso, "/isolinux/nope.cfg", tmp_path / "nope.cfg")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(iso: Path) -> None:
    with pytest.raises(MediaError, match=r"no directory /nope in the ISO"):
        media.list_dir(iso, "/nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "ISO not found", id="missing"),
        pytest.param(b"\0" * 100_000, "not a readable ISO 9660 image", id="zeros"),
        pytest.param(b"", "not a readable ISO 9660 image", id="empty"),
    ],
)
def test_not_an_iso(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.iso"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=message):
        media.volume_label(path)


# --- remaster edits ---------------------------------------------------------------------------------------


def test_serial_isolinux_cfg() -> None:
    out = media.serial_isolinux_cfg(EL7_ISOLINUX_CFG, "ttyS1,9600")
    lines = out.splitlines()
    assert lines[:4] == ["serial 1 9600", "prompt 1", "timeout 0", "default linux"]
    assert "vesamenu" not in out
    assert "menu default" not in out
    assert "timeout 600" not in out
    # Everything else stays, in order.
    assert out.count("label linux") == 1
    assert "append initrd=initrd.img inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 rd.live.check quiet" in out


SERIAL_GRUB_HEAD = [
    "serial --unit=0 --speed=115200",
    "terminal_input serial console",
    "terminal_output serial console",
    "set timeout=-1",
    'set default="0"',  # "Install CentOS 7", not EL 7.2's "1" (Test this media & install)
]


def test_serial_grub_cfg() -> None:
    out = media.serial_grub_cfg(EL7_GRUB_CFG)
    assert out.splitlines()[:5] == SERIAL_GRUB_HEAD
    assert "set timeout=60" not in out
    assert 'set default="1"' not in out
    assert "menuentry 'Install CentOS 7'" in out
    # Every kernel line, the submenu's too, talks on the serial port; nothing else changed.
    linux = [line for line in out.splitlines() if line.strip().startswith("linuxefi ")]
    assert len(linux) == 4
    original = [line for line in EL7_GRUB_CFG.splitlines() if line.strip().startswith("linuxefi ")]
    assert linux == [f"{line} console=ttyS0,115200" for line in original]
    assert media.grub_install_entry(out).title == "Install CentOS 7"


def test_serial_grub_cfg_console_follows_the_console_given() -> None:
    out = media.serial_grub_cfg(EL7_GRUB_CFG, "ttyS1,9600")
    assert out.splitlines()[0] == "serial --unit=1 --speed=9600"
    assert out.count("console=ttyS1,9600") == 4
    assert "console=ttyS0" not in out


def test_serial_grub_cfg_adds_no_second_console() -> None:
    once = media.serial_grub_cfg(EL7_GRUB_CFG)
    assert media.serial_grub_cfg(once).count("console=ttyS0,115200") == 4


_GRUB_ENTRY = """menuentry '{title}' --class os {{
\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=X {args}
\tinitrdefi /images/pxeboot/initrd.img
}}
"""


@pytest.mark.parametrize(
    ("cfg", "default", "title"),
    [
        pytest.param(
            _GRUB_ENTRY.format(title="Test this media & install", args="rd.live.check quiet")
            + _GRUB_ENTRY.format(title="Install", args="quiet"),
            1, "Install", id="media-check-first",
        ),
        pytest.param(
            "submenu 'Troubleshooting -->' {\n"
            + _GRUB_ENTRY.format(title="Rescue", args="rescue")
            + "}\n"
            + _GRUB_ENTRY.format(title="Install", args="quiet"),
            1, "Install", id="submenu-counts-as-one-entry",
        ),
        pytest.param(
            "# menuentry 'Old' {\n" + _GRUB_ENTRY.format(title="Install", args="quiet"),
            0, "Install", id="commented-entry-is-not-an-entry",
        ),
        pytest.param(
            'menuentry "Install \\"7\\"" --class os {\n\tlinuxefi /vmlinuz\n\tinitrdefi /initrd.img\n}\n',
            0, 'Install \\"7\\"', id="double-quoted-title",
        ),
    ],
)  # fmt: skip
def test_serial_grub_cfg_default_is_the_installer_entry(cfg: str, default: int, title: str) -> None:
    out = media.serial_grub_cfg('set default="0"\n' + cfg)
    assert f'set default="{default}"' in out.splitlines()
    assert out.count("set default=") == 1
    assert media.grub_install_entry(cfg).title == title


def test_serial_grub_cfg_without_an_installer_entry() -> None:
    only_check = _GRUB_ENTRY.format(title="Test this media & install", args="rd.live.check quiet")
    with pytest.raises(
        MediaError, match=r"grub\.cfg: no top-level menu entry boots a kernel without rd\.live\.check"
    ):
        media.serial_grub_cfg(only_check)


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("inst.ks=http://10.0.2.2:40123/AbC_d-E/ks.cfg", "inst.ks=http://10.0.2.2:40123/AbC_d-E/ks.cfg"),
        ("console=ttyS0,115200", "console=ttyS0,115200"),
        ("inst.stage2=hd:LABEL=CentOS\\x207", "'inst.stage2=hd:LABEL=CentOS\\x207'"),
        ("a b", "'a b'"),
        ("it's", "'it'\\''s'"),
        ("$root", "'$root'"),
        ("x;reboot", "'x;reboot'"),
    ],
)
def test_grub_quote(word: str, quoted: str) -> None:
    assert media.grub_quote(word) == quoted


# --- isolinux labels ----------------------------------------------------------------------------------------


def test_isolinux_labels_with_blanks_are_whole() -> None:
    cfg = (
        "label Install CentOS 7\n  kernel vmlinuz\n"
        "label linux rescue\n  kernel vmlinuz\n"
        "label linux\n  kernel vmlinuz\n"
    )
    assert media.isolinux_labels(cfg) == ["Install CentOS 7", "linux rescue", "linux"]
    out = media.serial_isolinux_cfg(cfg)
    assert "default linux" in out.splitlines()


def test_isolinux_first_label_with_blanks_is_the_default_whole() -> None:
    out = media.serial_isolinux_cfg("label Install CentOS 7\n  kernel vmlinuz\n")
    assert "default Install CentOS 7" in out.splitlines()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        pytest.param(
            "label linux\n  kernel a\n\nlabel check\n  kernel b\nlabel linux\n  kernel c\n",
            r"isolinux.cfg: duplicate label 'linux' on lines 1 and 6", id="duplicate-linux",
        ),
        pytest.param(
            "label linux\n  kernel a\nLABEL Linux\n  kernel c\n",
            r"duplicate label 'Linux' on lines 1 and 3", id="duplicate-differing-in-case",
        ),
        pytest.param(
            "label Install CentOS 7\nlabel linux\n  label Install CentOS 7\n",
            r"duplicate label 'Install CentOS 7' on lines 1 and 3", id="duplicate-with-blanks",
        ),
    ],
)  # fmt: skip
def test_isolinux_duplicate_label_is_an_error(cfg: str, message: str) -> None:
    with pytest.raises(MediaError, match=message):
        media.serial_isolinux_cfg(cfg)


@pytest.mark.parametrize("console", ["ttyS0", "hvc0,115200", "ttyS0,fast", ""], ids=str)
def test_bad_console(console: str) -> None:
    with pytest.raises(MediaError, match="expected ttyS<unit>,<speed>"):
        media.serial_isolinux_cfg(EL7_ISOLINUX_CFG, console)


def test_remaster_keeps_boot_setup_and_label(
    tmp_path: Path, iso: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    out = media.remaster_for_serial(iso)
    assert out.parent == tmp_path / "cache" / "remastered"
    assert media.volume_label(out) == LABEL
    cfg = media.read_file(out, "/isolinux/isolinux.cfg", tmp_path / "cfg").read_text()
    assert cfg == media.serial_isolinux_cfg(EL7_ISOLINUX_CFG)
    grub = media.read_file(out, "/EFI/BOOT/grub.cfg", tmp_path / "grub").read_text()
    assert grub == media.serial_grub_cfg(EL7_GRUB_CFG)
    assert media.list_dir(out, "/isolinux") == media.list_dir(iso, "/isolinux")
    report = tools.run(["xorriso", "-indev", out, "-report_el_torito", "plain"], timeout=60)
    text = (report.stdout + report.stderr).decode()
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in text
    assert "boot-info-table" in text
    # The source ISO is untouched and the copy is reused.
    assert media.read_file(iso, "/isolinux/isolinux.cfg", tmp_path / "orig").read_text() == EL7_ISOLINUX_CFG
    mtime = out.stat().st_mtime_ns
    assert media.remaster_for_serial(iso) == out
    assert out.stat().st_mtime_ns == mtime
    # Another console is another copy.
    assert media.remaster_for_serial(iso, console="ttyS1,9600") != out


def test_remaster_of_a_non_iso_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.iso"
    bad.write_bytes(b"x" * 4096)
    with pytest.raises(MediaError, match="not a readable ISO 9660 image"):
        media.remaster_for_serial(bad)
    assert [
        p.name for p in (tmp_path / "cache" / "remastered").iterdir() if not p.name.endswith(".lock")
    ] == []
    assert bad.stat().st_size == 4096


# --- the EFI boot image (images/efiboot.img): what UEFI CD boot really reads -------------------------------


def _el_torito(iso: Path) -> str:
    report = tools.run(["xorriso", "-indev", iso, "-report_el_torito", "plain"], timeout=60)
    return (report.stdout + report.stderr).decode()


def _uefi_entry_lba(iso: Path) -> int | None:
    """Block address the El Torito UEFI entry boots from (last column of its `boot img` line)."""
    m = re.search(r"^El Torito boot img :\s+\d+\s+UEFI\s.*?(\d+)\s*$", _el_torito(iso), flags=re.MULTILINE)
    return int(m.group(1)) if m else None


def _file_lba(iso: Path, path: str) -> int:
    out = tools.run(["xorriso", "-indev", iso, "-find", path, "-exec", "report_lba", "--"], timeout=60)
    m = re.search(r"File data lba:\s+\d+\s*,\s*(\d+)\s*,", (out.stdout + out.stderr).decode())
    assert m is not None, f"no {path} in {iso}"
    return int(m.group(1))


def _fat_grub_cfg(iso: Path, work: Path) -> str:
    """EFI/BOOT/grub.cfg inside the ISO's images/efiboot.img, read back with mtools."""
    img = media.read_file(iso, "/images/efiboot.img", work / f"{iso.stem}-efiboot.img")
    return tools.run(["mcopy", "-i", img, "::EFI/BOOT/grub.cfg", "-"], timeout=60).stdout.decode()


def test_remaster_edits_grub_cfg_inside_efiboot_img(
    tmp_path: Path, iso: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    source_sha = digest.sha256_file(iso)
    assert _fat_grub_cfg(iso, tmp_path) == EL7_EFIBOOT_GRUB_CFG  # the fixture is what we think it is
    out = media.remaster_for_serial(iso)
    cfg = _fat_grub_cfg(out, tmp_path)
    assert cfg.splitlines()[:5] == SERIAL_GRUB_HEAD
    assert cfg == media.serial_grub_cfg(EL7_EFIBOOT_GRUB_CFG)
    assert "set timeout=60" not in cfg
    assert 'set default="1"' not in cfg
    assert "menuentry 'Install CentOS Linux 7'" in cfg
    lines = cfg.splitlines()
    entry = next(i for i, line in enumerate(lines) if line.startswith("menuentry 'Install CentOS Linux 7'"))
    assert lines[entry + 1] == (
        "\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet"
        " console=ttyS0,115200"
    )
    assert cfg.count("console=ttyS0,115200") == 2
    img = media.read_file(out, "/images/efiboot.img", tmp_path / "out-efiboot.img")
    listing = tools.run(["mdir", "-b", "-i", img, "::EFI/BOOT"], timeout=60).stdout.decode()
    assert {Path(line).name.upper() for line in listing.split()} >= {"BOOTX64.EFI", "GRUBX64.EFI", "GRUB.CFG"}
    # The EFI El Torito entry survives and boots the edited image: its block address is that file's.
    text = _el_torito(out)
    assert "El Torito img path :   2  /images/efiboot.img" in text
    assert _uefi_entry_lba(out) == _file_lba(out, "/images/efiboot.img")
    assert "El Torito img path :   1  /isolinux/isolinux.bin" in text
    # The source ISO is byte-identical, its EFI image included.
    assert digest.sha256_file(iso) == source_sha
    assert _fat_grub_cfg(iso, tmp_path) == EL7_EFIBOOT_GRUB_CFG


def test_remaster_without_efiboot_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    bios_only = make_el7_iso(tmp_path, efiboot=False)
    assert _uefi_entry_lba(bios_only) is None
    out = media.remaster_for_serial(bios_only)
    assert "efiboot.img" not in media.list_dir(out, "/images")
    assert _uefi_entry_lba(out) is None
    cfg = media.read_file(out, "/isolinux/isolinux.cfg", tmp_path / "cfg").read_text()
    assert cfg == media.serial_isolinux_cfg(EL7_ISOLINUX_CFG)
    grub = media.read_file(out, "/EFI/BOOT/grub.cfg", tmp_path / "grub").read_text()
    assert grub == media.serial_grub_cfg(EL7_GRUB_CFG)


def _fat_without_grub_cfg(work: Path) -> Path:
    img = make_efiboot_img(work)
    tools.run(["mdel", "-i", img, "::EFI/BOOT/grub.cfg"], timeout=60)
    return img


def _not_fat(work: Path) -> Path:
    img = work / "efiboot.img"
    img.write_bytes(b"\xff" * 65536)
    return img


@pytest.mark.parametrize(
    ("make_img", "message"),
    [
        pytest.param(
            _fat_without_grub_cfg, 'File "::EFI/BOOT/grub.cfg" not found', id="fat-without-grub-cfg"
        ),
        pytest.param(_not_fat, "not a FAT filesystem", id="not-a-fat-image"),
    ],
)
def test_remaster_with_unreadable_efiboot_img_leaves_nothing(
    tmp_path: Path,
    iso: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_img: Callable[[Path], Path],
    message: str,
) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    fat_dir = tmp_path / "fat"
    fat_dir.mkdir()
    img = make_img(fat_dir)
    bad = tmp_path / "bad.iso"
    tools.run(
        ["xorriso", "-indev", iso, "-outdev", bad, "-boot_image", "any", "replay",
         "-map", img, "/images/efiboot.img", "-commit"],
        timeout=60,
    )  # fmt: skip
    with pytest.raises(
        MediaError, match="cannot read EFI/BOOT/grub.cfg in /images/efiboot.img: .*" + re.escape(message)
    ):
        media.remaster_for_serial(bad)
    assert [
        p.name for p in (tmp_path / "cache" / "remastered").iterdir() if not p.name.endswith(".lock")
    ] == []
