"""UEFI serial-prompt end to end (QEMU TCG, OVMF): the testbed ISO boots its own GRUB EFI image from the
El Torito EFI entry, the factory recognises GRUB's menu on the serial console, types the boot line at
GRUB's command line with the echo check, and the testbed installs."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from factory.core.record import BuildDir
from factory.spec import Firmware, Spec
from factory.stages.install import install
from factory.stages.media import media
from factory.stages.media.media import MediaResult
from factory.vm import qemu

pytestmark = pytest.mark.vm


@pytest.fixture
def uefi_spec(testbed_spec: Callable[..., Spec]) -> Spec:
    if not qemu.OVMF.is_file():
        pytest.fail(f"{qemu.OVMF} missing: apt-get install ovmf (it is in .ci/apt-packages.txt)")
    base = testbed_spec("serial-prompt")
    return base.model_copy(update={"vm": base.vm.model_copy(update={"firmware": Firmware.UEFI})})


def test_uefi_serial_prompt_installs_through_grub(
    uefi_spec: Spec, testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    result = install.install(uefi_spec, media.for_boot(uefi_spec, testbed_media), build_dir)
    print(
        f"UEFI serial-prompt install: guest {result.guest_seconds:.1f} s, stage {result.total_seconds:.1f} s"
    )
    assert result.disk.is_file()
    assert result.boot_mode == "serial-prompt"
    console = (build_dir.path / "console.log").read_text(errors="replace")
    # OVMF ran GRUB from the EFI boot image, and GRUB (not isolinux) took the boot line.
    assert "GNU GRUB" in console
    assert "ISOLINUX" not in console
    assert "Installation complete" in console
    # The kernel got the installer entry's line (not the media check) plus the factory's arguments
    # (the entry says `quiet`: the testbed installer logs the command line to its log port).
    logged = (build_dir.path / "anaconda.log").read_text(errors="replace")
    m = re.search(r"kernel command line: ([^\r\n]*)", logged)
    assert m is not None, "the installer logged no kernel command line"
    cmdline = m.group(1).split()
    assert cmdline[0] == "BOOT_IMAGE=/images/pxeboot/vmlinuz"
    assert "rd.live.check" not in cmdline
    assert "console=ttyS0,115200" in cmdline
    assert any(a.startswith("inst.ks=http://10.0.2.2:") for a in cmdline)
    assert "inst.text" in cmdline
    requests = (build_dir.path / "ks-requests.log").read_text()
    assert " 200 " in requests
