"""Shared by the install benchmarks: the testbed medium, a testbed spec, a short build directory."""

from __future__ import annotations

import tempfile
from pathlib import Path

from factory.core.record import BuildDir
from factory.spec import Accel, Boot, BootMode, Spec, load_spec
from factory.stages.media.media import MediaResult

ROOT = Path(__file__).resolve().parents[1]


def media() -> MediaResult:
    from factory.testbed import build_testbed

    tb = build_testbed()
    return MediaResult(iso=tb.iso, sha256=tb.sha256, volume_label=tb.volume_label, source="builtin:testbed")


def spec(label: str, mode: str = "kernel", extra_args: tuple[str, ...] = (), **timeouts: int) -> Spec:
    """specs/testbed.yaml for an install benchmark (`label` is the medium's; the spec names the same)."""
    assert label  # kept for the callers' signature: the testbed's label is in the spec
    base = load_spec(ROOT / "specs" / "testbed.yaml")
    # The real testbed spec, with TCG forced (no probe) and the tests' own boot mode and bounds.
    return base.model_copy(
        update={
            "vm": base.vm.model_copy(update={"accel": Accel.TCG}),
            "boot": Boot(mode=BootMode(mode), extra_args=extra_args),
            "timeouts": base.timeouts.model_copy(update={"kickstart_fetch": 60, "install": 900, **timeouts}),
        }
    )


def build_dir() -> BuildDir:
    return BuildDir.create(Path(tempfile.mkdtemp(prefix="fbench-", dir="/tmp")), "tb")
