"""boot.mode pxe: the testbed installs over the network with no ISO attached — QEMU's iPXE ROM, QEMU's TFTP,
pxelinux, the testbed's pxeboot kernel and initrd, the kickstart and the install source over HTTP from the
factory's 127.0.0.1-only server — and the installed disk passes the same verify gate as every build."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from factory.core.record import BuildDir
from factory.spec import Firmware, Spec
from factory.stages.install import install
from factory.stages.media.media import MediaResult
from factory.stages.verify import verify
from factory.vm import sshkey

pytestmark = pytest.mark.vm


def test_pxe_install_then_verify(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    spec = testbed_spec("pxe")
    result = install.install(spec, testbed_media, build_dir)
    assert result.boot_mode == "pxe" and result.disk.is_file() and result.packages > 0
    console = (build_dir.path / "console.log").read_text(errors="replace")
    assert "PXELINUX" in console  # pxelinux loaded from QEMU's TFTP, not the kernel given to QEMU
    assert "Fetching the installation source from http://10.0.2.2:" in console
    assert "Installation complete" in console
    log = (build_dir.path / "anaconda.log").read_text(errors="replace")
    assert "installation media found" not in log  # no CD-ROM was looked at
    requests = (build_dir.path / "ks-requests.log").read_text().splitlines()
    fetched = {
        line.split()[3].split("/repo/", 1)[-1] for line in requests if "/repo/" in line and " 200 " in line
    }
    assert {"images/install.img", "images/install.pkgs", "isolinux/vmlinuz", "Packages/"} <= fetched
    assert not (build_dir.path / ".boot").exists() or not any((build_dir.path / ".boot").iterdir())
    # The same gate as a CD-ROM install: boot the disk and run the acceptance suite.
    vres = verify.verify(spec, result.disk, build_dir, key=sshkey.load(build_dir.key))
    assert vres.passed, vres.summary


def test_uefi_pxe_install(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    # OVMF's iPXE EFI driver -> grubx64.efi over QEMU's TFTP -> the installer. (The testbed installs a BIOS
    # boot loader, extlinux, so its disk is verified by the BIOS test above, not booted under UEFI here.)
    base = testbed_spec("pxe")
    spec = base.model_copy(update={"vm": base.vm.model_copy(update={"firmware": Firmware.UEFI})})
    result = install.install(spec, testbed_media, build_dir)
    assert result.disk.is_file() and result.packages > 0
    console = (build_dir.path / "console.log").read_text(errors="replace")
    assert "grubx64.efi" in console and "PXELINUX" not in console
    assert "Fetching the installation source from http://10.0.2.2:" in console
    assert "Installation complete" in console
