"""Reading ISOs with pycdlib (Rock Ridge, Joliet, plain ISO 9660) and the serial remaster's edits."""

from __future__ import annotations

from pathlib import Path

import pytest
from el7iso import EL7_GRUB_CFG, EL7_ISOLINUX_CFG, LABEL, make_el7_iso

from factory import media, tools
from factory.errors import MediaError


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


def test_serial_grub_cfg() -> None:
    out = media.serial_grub_cfg(EL7_GRUB_CFG)
    assert out.splitlines()[:4] == [
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=-1",
    ]
    assert "set timeout=60" not in out
    assert "menuentry 'Install CentOS 7'" in out


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
