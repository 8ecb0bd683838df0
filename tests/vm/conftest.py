"""Shared VM fixtures: the testbed install medium, a testbed spec, build directories, process checks.

(The testbed engineer may add fixtures here too: keep additions in their own section.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.media import MediaResult
from factory.record import BuildDir
from factory.spec import Spec

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- install-engine fixtures (issue 4)
@pytest.fixture(scope="session")
def testbed_media() -> MediaResult:
    from factory.testbed import build_testbed

    tb = build_testbed()
    return MediaResult(iso=tb.iso, sha256=tb.sha256, volume_label=tb.volume_label, source="builtin:testbed")


@pytest.fixture
def testbed_spec(testbed_media: MediaResult) -> Callable[..., Spec]:
    """testbed_spec(mode="kernel", extra_args=(), **timeouts) -> a Spec installing the testbed."""

    def make(mode: str = "kernel", extra_args: tuple[str, ...] = (), **timeouts: int) -> Spec:
        raw: dict[str, Any] = {
            "name": "testbed",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": testbed_media.volume_label},
            "kickstart": {"path": str(ROOT / "kickstarts" / "testbed.ks")},
            "vm": {"memory_mib": 1024, "cpus": 2, "disk_gib": 2, "accel": "tcg"},
            "boot": {"mode": mode, "extra_args": extra_args},
            # idle as specs/testbed.yaml: the testbed unpacks its base system silently (~27 s on an idle
            # host, more under load) after printing its package lines; the hang cases set their own.
            "timeouts": {"idle": 120, "kickstart_fetch": 60, "install": 900, **timeouts},
            "source": str(ROOT / "specs" / "testbed.yaml"),
        }
        return Spec.model_validate(raw)

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
