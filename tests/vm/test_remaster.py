"""The remastered ISO really boots to isolinux's `boot:` prompt on the serial console (QEMU, TCG).

factory/vm/qemu.py had not landed when this was written, so QEMU is started here with pexpect and one
fixed command line; nothing else is shared.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from el7iso import make_el7_iso

from factory.stages.media import media

pytestmark = pytest.mark.vm

# Measured: about 0.3 s under TCG on the development machine; generous for a loaded CI host.
PROMPT_TIMEOUT_S = 60
# How long the stock (unremastered) media is watched for a prompt that must not come.
SILENCE_S = 5


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_el7_iso(tmp_path_factory.mktemp("el7"))


@contextlib.contextmanager
def _boot(cdrom: Path) -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(
        "qemu-system-x86_64",
        ["-accel", "tcg", "-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none",
         "-cdrom", str(cdrom), "-m", "256", "-no-reboot"],
        timeout=PROMPT_TIMEOUT_S,
    )  # fmt: skip
    try:
        yield child
    finally:
        child.terminate(force=True)
        assert not child.isalive()


def test_remastered_iso_shows_boot_prompt_on_serial(
    tmp_path: Path, iso: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    remastered = media.remaster_for_serial(iso)
    started = time.monotonic()
    with _boot(remastered) as child:
        child.expect(r"ISOLINUX \d")
        child.expect("boot:")
        print(f"boot: prompt on ttyS0 after {time.monotonic() - started:.2f} s")
        # The prompt waits (timeout 0): nothing boots by itself in the next seconds.
        child.expect([pexpect.TIMEOUT, r"Loading|vmlinuz"], timeout=3)
        assert child.after is pexpect.TIMEOUT


def test_stock_media_is_silent_on_serial(iso: Path) -> None:
    """The control: without the remaster, isolinux says nothing on ttyS0 (why the remaster exists)."""
    with _boot(iso) as child:
        index = child.expect([pexpect.TIMEOUT, "boot:", "ISOLINUX"], timeout=SILENCE_S)
        assert index == 0, f"stock media printed on serial: {child.before!r}"
