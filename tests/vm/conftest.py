"""Shared VM fixtures: the testbed install medium, a testbed spec, build directories, process checks.

(The testbed engineer may add fixtures here too: keep additions in their own section.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from factory.core.record import BuildDir
from factory.spec import Accel, Boot, BootMode, Spec, load_spec
from factory.stages.media.media import MediaResult

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- install-engine fixtures
@pytest.fixture(scope="session")
def testbed_media() -> MediaResult:
    from factory.testbed import build_testbed

    tb = build_testbed()
    return MediaResult(iso=tb.iso, sha256=tb.sha256, volume_label=tb.volume_label, source="builtin:testbed")


@pytest.fixture
def testbed_spec(testbed_media: MediaResult) -> Callable[..., Spec]:
    """testbed_spec(mode="kernel", extra_args=(), **timeouts) -> a Spec installing the testbed."""

    def make(mode: str = "kernel", extra_args: tuple[str, ...] = (), **timeouts: int) -> Spec:
        base = load_spec(ROOT / "specs" / "testbed.yaml")
        # The real testbed spec, with TCG forced (no probe) and the tests' own boot mode and bounds.
        return base.model_copy(
            update={
                "vm": base.vm.model_copy(update={"accel": Accel.TCG}),
                "boot": Boot(mode=BootMode(mode), extra_args=extra_args),
                "timeouts": base.timeouts.model_copy(
                    update={"kickstart_fetch": 60, "install": 900, **timeouts}
                ),
            }
        )

    return make


@pytest.fixture
def build_dir() -> Iterator[BuildDir]:
    """A build directory, removed after the test (kept when FACTORY_KEEP_TEST_BUILDS is set)."""
    # Short paths: QEMU's unix sockets live in the build dir and sun_path holds 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fb-", dir=os.environ.get("FACTORY_TEST_BUILDS", "/tmp")))
    try:
        yield BuildDir.create(root, "tb")
    finally:
        if not os.environ.get("FACTORY_KEEP_TEST_BUILDS"):
            shutil.rmtree(root, ignore_errors=True)
