"""The images workflow's build step (.github/scripts/build.sh) run here on the testbed spec, end to end:
a real build (validate → media → install → verify → seal → export under TCG), then the artifact layout the
workflow uploads (record, logs, JUnit, the records `factory plan` reads, the promote job's raw export)."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from factory.core import digest
from factory.plan import plan_spec
from factory.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "build.sh"

pytestmark = pytest.mark.vm


@pytest.mark.timeout(1800)
def test_build_script_builds_the_testbed_and_lays_out_the_artifacts(tmp_path: Path) -> None:
    builds = tmp_path / "build"
    out = tmp_path / "artifacts" / "testbed"
    gh_output = tmp_path / "github-output"
    env = {
        **os.environ,
        # The installed factory: the command tox's build-testbed runs, without making a tox venv here.
        "FACTORY_BUILD_VIA": "factory",
        "FACTORY_BUILD_DIR": str(builds),
        # The workflow runs on hosted runners; on a host where KVM does not work, no probe boot.
        "FACTORY_BUILD_ARGS": "",
        "GITHUB_OUTPUT": str(gh_output),
    }
    proc = subprocess.run(
        [str(SCRIPT), "testbed", str(out)], env=env, capture_output=True, text=True, timeout=1700, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    outputs = dict(line.split("=", 1) for line in gh_output.read_text().splitlines())
    build_id = outputs["build_id"]
    assert outputs["status"] == "0"
    build_dir = builds / "testbed" / build_id
    assert outputs["build_dir"] == str(build_dir)

    record = json.loads((out / "record.json").read_text())
    assert record["build_id"] == build_id
    for stage in ("validate", "media", "install", "verify", "seal", "export"):
        assert record["stages"][stage]["status"] == "ok", stage
    assert (out / "records" / "testbed" / build_id / "record.json").read_text() == (
        build_dir / "record.json"
    ).read_text()

    assert (out / "logs" / "console.log").stat().st_size > 0
    assert (out / "logs" / "verify" / "console.log").stat().st_size > 0
    suite = ET.parse(out / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    assert int(suite.get("tests", "0")) > 0
    assert suite.get("failures") == "0" and suite.get("errors") == "0"

    # The promote job gets the record and the raw export the record names, nothing else.
    assert (out / "promote" / "LATEST").read_text().strip() == build_id
    promote_dir = out / "promote" / build_id
    raws = list((promote_dir / "export").glob("*.raw"))
    [raw] = raws
    [art] = [a for a in record["stages"]["export"]["result"]["artifacts"] if a["format"] == "raw"]
    assert Path(art["path"]).name == raw.name
    assert digest.sha256_file(raw) == art["sha256"]
    assert {p.name for p in (promote_dir / "export").iterdir()} <= {
        raw.name,
        f"{raw.name}.sha256",
        "manifest.json",
    }

    # Never a secret or a disk in what is uploaded: the build key is gone, no qcow2 copies.
    names = {p.name for p in out.rglob("*")}
    assert "build-key" not in names
    assert not any(n.endswith(".qcow2") for n in names)

    # `factory plan` reads the uploaded records the way the next scheduled run will.
    entry = plan_spec(load_spec(ROOT / "specs" / "testbed.yaml"), out / "records")
    assert entry.last_verified == str(out / "records" / "testbed" / build_id)
