"""Shared by the install benchmarks: the testbed medium, a testbed spec, a short build directory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from factory.media import MediaResult
from factory.record import BuildDir
from factory.spec import Spec

ROOT = Path(__file__).resolve().parents[1]


def media() -> MediaResult:
    from factory.testbed import build_testbed

    tb = build_testbed()
    return MediaResult(iso=tb.iso, sha256=tb.sha256, volume_label=tb.volume_label, source="builtin:testbed")


def spec(label: str, mode: str = "kernel", extra_args: tuple[str, ...] = (), **timeouts: int) -> Spec:
    raw: dict[str, Any] = {
        "name": "testbed",
        "os": "testbed",
        "media": {"builtin": "testbed", "volume_label": label},
        "kickstart": {"path": str(ROOT / "kickstarts" / "testbed.ks")},
        "vm": {"memory_mib": 1024, "cpus": 2, "disk_gib": 2, "accel": "tcg"},
        "boot": {"mode": mode, "extra_args": extra_args},
        # idle as specs/testbed.yaml: the testbed unpacks its base system silently (~27 s on an idle host).
        "timeouts": {"idle": 120, "kickstart_fetch": 60, "install": 900, **timeouts},
        "source": str(ROOT / "specs" / "testbed.yaml"),
    }
    return Spec.model_validate(raw)


def build_dir() -> BuildDir:
    return BuildDir.create(Path(tempfile.mkdtemp(prefix="fbench-", dir="/tmp")), "tb")
