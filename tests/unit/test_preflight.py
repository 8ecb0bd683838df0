"""`factory build` proves what its specs need before anything boots: a missing or broken piece fails in
seconds with its fix named, instead of after install and verify."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factory.errors import EXIT_TOOL
from factory.host import capabilities
from factory.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _fake(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / name).chmod(0o755)


def _build(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "FACTORY_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "factory", "build", "specs/testbed.yaml", "--build-dir", str(tmp_path / "b")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_a_broken_tool_fails_the_build_before_anything_boots(tmp_path: Path) -> None:
    # An xorriso that is on PATH (so a presence check passes) but writes nothing.
    _fake(tmp_path / "bin", "xorriso", "exit 0")
    started = time.monotonic()
    proc = _build(tmp_path, f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert proc.returncode == EXIT_TOOL, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "this host cannot build" in errors[0]
    assert "xorriso makes a bootable ISO" in errors[0]
    assert "Traceback" not in proc.stderr
    # Nothing was started: no build directory, and well before an install could have begun.
    assert not (tmp_path / "b").exists()
    assert time.monotonic() - started < 120


def test_a_missing_tool_is_named_with_its_packages(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sh", "env"):
        found = subprocess.run(["which", name], capture_output=True, text=True, check=True).stdout.strip()
        (bin_dir / name).symlink_to(found)
    proc = _build(tmp_path, str(bin_dir))
    assert proc.returncode == EXIT_TOOL, proc.stderr
    assert "apt-get install -y qemu-system-x86" in proc.stderr
    assert "dnf install -y qemu-system-x86-core" in proc.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("spec", "expected", "absent"),
    [
        pytest.param(
            "testbed.yaml", {"qemu", "ext4", "mmdebstrap", "cpio"}, {"libguestfs", "uefi"}, id="testbed"
        ),
        pytest.param(
            "centos72.yaml", {"qemu", "iso", "libguestfs"}, {"mmdebstrap", "cpio"}, id="centos72-xfs"
        ),
    ],
)
def test_needed_by(spec: str, expected: set[str], absent: set[str]) -> None:
    names = set(capabilities.needed_by(load_spec(ROOT / "specs" / spec)))
    assert expected <= names
    assert not names & absent


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"export": ["raw", "oci"]}, {"oci", "bmap"}, id="oci-export"),
        pytest.param({"export": ["qcow2", "pxe"]}, {"pxe"}, id="pxe-export"),
        pytest.param({"boot": {"mode": "pxe"}}, {"pxe"}, id="pxe-install"),
    ],
)
def test_export_and_network_boot_needs(changes: dict[str, object], expected: set[str]) -> None:
    import yaml

    from factory.spec import Spec

    raw = yaml.safe_load((ROOT / "specs" / "testbed-platforms.yaml").read_text())
    raw.update(changes)
    raw["source"] = ROOT / "specs" / "testbed-platforms.yaml"
    for key in ("vsphere", "openstack", "registry", "ova"):
        raw.pop(key, None)
    names = set(capabilities.needed_by(Spec.model_validate(raw)))
    assert expected <= names
