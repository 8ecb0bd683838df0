"""Pure parts of the testbed build: the content hash, the cpio writer, module load order."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from factory.errors import ToolError
from factory.testbed import build, cpio, kmod

SCRIPTS = {"installer.sh": b"echo one\n", "ksparse.sh": b"awk\n"}
VERSIONS = {"busybox-static": "1:1.35.0-4", "linux-image-6.1.0-56-cloud-amd64": "6.1.192-2"}


def test_content_hash_is_stable() -> None:
    assert build.content_hash(SCRIPTS, VERSIONS) == build.content_hash(dict(SCRIPTS), dict(VERSIONS))


@pytest.mark.parametrize(
    ("scripts", "versions"),
    [
        pytest.param({**SCRIPTS, "installer.sh": b"echo two\n"}, VERSIONS, id="script-changed"),
        pytest.param({**SCRIPTS, "new.sh": b""}, VERSIONS, id="script-added"),
        pytest.param(SCRIPTS, {**VERSIONS, "busybox-static": "1:1.36.0-1"}, id="version-changed"),
        pytest.param(SCRIPTS, {**VERSIONS, "tree": "2.1.0-1"}, id="package-added"),
        # The host's grub-mkimage links BOOTX64.EFI: a new one is a new EFI boot image.
        pytest.param(
            SCRIPTS, {**VERSIONS, build.GRUB_MKIMAGE: "grub-mkimage (GRUB) 2.12-1"}, id="grub-mkimage"
        ),
    ],
)
def test_content_hash_changes_with_any_input(scripts: dict[str, bytes], versions: dict[str, str]) -> None:
    assert build.content_hash(scripts, versions) != build.content_hash(SCRIPTS, VERSIONS)


def test_content_hash_separates_parts() -> None:
    assert build.content_hash(SCRIPTS, VERSIONS, part="rootfs") != build.content_hash(SCRIPTS, VERSIONS)


def test_uefi_boot_inputs_are_hashed() -> None:
    # GRUB's modules come from a package whose version is hashed; grub.cfg, the module list and the EFI
    # image's size are constants of build.py, which is a hashed script.
    assert "grub-efi-amd64-bin" in build.MEDIA_PACKAGES
    assert "build.py" in build.SCRIPTS
    assert "linuxefi" in build.GRUB_MODULES and "serial" in build.GRUB_MODULES
    assert build.FORMAT >= 3


def test_every_hashed_script_exists() -> None:
    for name in (*build.SCRIPTS, *build.ROOTFS_SCRIPTS):
        assert (build.DATA / name).is_file(), name


def test_cpio_archive_layout() -> None:
    data = cpio.archive([cpio.Entry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n")])
    assert data.startswith(b"070701")
    assert b"init\0" in data
    assert b"TRAILER!!!\0" in data
    assert len(data) % 4 == 0


@pytest.mark.skipif(shutil.which("cpio") is None, reason="host cpio missing")
def test_cpio_archive_reads_back_with_gnu_cpio(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("hello")
    (tmp_path / "d" / "l").symlink_to("f")
    entries = [*cpio.tree_entries(tmp_path), cpio.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    listing = subprocess.run(["cpio", "-itv"], input=cpio.archive(entries), capture_output=True, check=True)
    out = listing.stdout.decode()
    assert "d/f" in out
    assert "d/l -> f" in out
    assert "dev/console" in out


def _fake_module(path: Path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + depends.encode() + b"\x00vermagic=6.1\x00")


def test_module_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    _fake_module(tmp_path / "kernel/virtio_pci.ko", "virtio_ring,virtio")
    _fake_module(tmp_path / "kernel/virtio_ring.ko", "virtio")
    _fake_module(tmp_path / "kernel/virtio.ko", "")
    _fake_module(tmp_path / "kernel/isofs.ko", "cdrom")
    order = kmod.load_order(["virtio_pci", "isofs"], kmod.module_index(tmp_path), builtin={"cdrom"})
    assert order == ["virtio", "virtio_ring", "virtio_pci", "isofs"]


def test_module_missing_is_a_tool_error(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="neither in the kernel package nor built in"):
        kmod.load_order(["nope"], kmod.module_index(tmp_path), builtin=set())


def test_testbed_boot_configs_have_the_el_shape() -> None:
    from factory.stages.media import media

    # EL 7.2's default is the media check; the remaster must move it to the installer entry.
    assert 'set default="1"' in build.GRUB_CFG.splitlines()
    entry = media.grub_install_entry(build.GRUB_CFG)
    assert (entry.title, entry.index) == ("Install TESTBED 1", 0)
    assert 'set default="0"' in media.serial_grub_cfg(build.GRUB_CFG).splitlines()
    assert media.isolinux_labels(build.ISOLINUX_CFG) == ["linux"]
