"""The product as a user meets it: `factory build specs/testbed.yaml --promote`, twice.

The first run goes through every stage for real (testbed ISO, QEMU install under TCG, testinfra
verification, sealing, qemu-img exports, promotion to the embedded local AWS endpoint); the second run with
unchanged inputs must reuse the verified image: install, verify, seal and export skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.core.digest import sha256_file
from factory.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "testbed.yaml"
PIPELINE = ["validate", "media", "install", "verify", "seal", "compliance", "export", "promote"]

pytestmark = pytest.mark.vm


def _factory_build(build_root: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory",
            "build",
            str(SPEC),
            "--promote",
            "--json",
            "--build-dir",
            str(build_root),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    outcome = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc.returncode, outcome, proc.stderr


def _qemu_children_of_build(build_root: Path) -> list[str]:
    """QEMU processes whose command line mentions this build root (none may outlive the command)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and str(build_root) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def build_root() -> Iterator[Path]:
    # Short path: QEMU's unix sockets live in the build dir and sun_path holds 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fe-", dir="/tmp"))
    yield root
    if not os.environ.get("FACTORY_KEEP_TEST_BUILDS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def first_run(build_root: Path) -> dict[str, Any]:
    code, outcome, stderr = _factory_build(build_root)
    assert code == 0, stderr[-3000:]
    assert len(outcome) == 1
    return outcome[0]


def test_every_stage_ran(first_run: dict[str, Any]) -> None:
    assert list(first_run["stages"]) == PIPELINE
    # The demo spec has no compliance section: that stage says so (not needed); every other one ran.
    assert {name: st["status"] for name, st in first_run["stages"].items()} == {
        **dict.fromkeys(PIPELINE, "ok"),
        "compliance": "skipped",
    }
    assert first_run["stages"]["compliance"]["skip"] == "not needed"
    assert first_run["error"] is None


def test_ami_in_every_account_and_region(first_run: dict[str, Any]) -> None:
    spec = load_spec(SPEC)
    assert spec.aws is not None
    expected = {t.profile: sorted(t.regions) for t in spec.aws.targets}
    assert {profile: sorted(regions) for profile, regions in first_run["amis"].items()} == expected
    for regions in first_run["amis"].values():
        for ami in regions.values():
            assert ami.startswith("ami-")
    manifest = json.loads((Path(first_run["build_dir"]) / "promotion.json").read_text())
    assert ami in json.dumps(manifest)


def test_record_binds_verification_to_the_promoted_image(first_run: dict[str, Any]) -> None:
    build = Path(first_run["build_dir"])
    record = json.loads((build / "record.json").read_text())
    stages = record["stages"]
    verify, seal, export = stages["verify"]["result"], stages["seal"]["result"], stages["export"]["result"]
    assert verify["passed"] is True
    assert verify["image_sha256"] == sha256_file(build / "disk.qcow2")
    assert seal["source_sha256"] == verify["image_sha256"]
    assert seal["recheck_passed"] is True
    assert seal["sealed_sha256"] == first_run["image_sha256"]
    formats = {a["format"]: a for a in export["artifacts"]}
    assert set(formats) == {"raw", "qcow2", "vmdk", "vhd"}
    raw = formats["raw"]
    assert raw["source_sha256"] == seal["sealed_sha256"]
    assert sha256_file(Path(raw["path"])) == raw["sha256"]
    assert Path(raw["bmap"]).is_file() and 0 < raw["bmap_mapped_bytes"] < raw["size"]
    # The container image and the PXE tree: tests/targets/test_platforms_e2e.py (testbed-platforms.yaml).
    for key in ("iso_sha256", "kickstart_sha256", "spec_sha256", "factory_version"):
        assert record["inputs"][key]


def test_no_secret_or_process_left(first_run: dict[str, Any], build_root: Path) -> None:
    build = Path(first_run["build_dir"])
    assert not (build / "build-key").exists(), "the private build key must be gone after sealing"
    record_text = (build / "record.json").read_text()
    assert "PRIVATE KEY" not in record_text
    assert "$6$" not in record_text  # no password hash from the kickstart
    assert _qemu_children_of_build(build_root) == []


def test_second_run_reuses_the_verified_image(first_run: dict[str, Any], build_root: Path) -> None:
    build = Path(first_run["build_dir"])
    disk_mtime = (build / "disk.qcow2").stat().st_mtime_ns
    code, outcome, stderr = _factory_build(build_root)
    assert code == 0, stderr[-3000:]
    (second,) = outcome
    assert second["build_dir"] == first_run["build_dir"]
    statuses = {name: (st["status"], st.get("skip")) for name, st in second["stages"].items()}
    done_before = ("skipped", "done before for this image")
    assert statuses == {
        "validate": ("ok", None),
        "media": ("ok", None),
        "install": done_before,
        "verify": done_before,
        "seal": done_before,
        "compliance": ("skipped", "not needed"),
        "export": done_before,
        "promote": ("ok", None),
    }
    assert second["image_sha256"] == first_run["image_sha256"]
    assert (build / "disk.qcow2").stat().st_mtime_ns == disk_mtime
