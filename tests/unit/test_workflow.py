"""The images workflow as data: what the issue asks of it, checked on the file itself (the schema check is
in `tox -e lint`; the build step's script runs for real in tests/vm/test_workflow_build.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory import cli

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "images.yml"
SCRIPT = ROOT / ".github" / "scripts" / "build.sh"
UDEV = 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"'


@pytest.fixture(scope="module")
def wf() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def steps(wf: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = wf["jobs"][job]["steps"]
    return result


def test_triggers_quarterly_monthly_and_on_demand(wf: dict[Any, Any]) -> None:
    on = wf[True]  # YAML 1.1 reads the key `on` as true
    crons = [c["cron"] for c in on["schedule"]]
    assert len(crons) == 2
    months = {c.split()[3] for c in crons}
    assert months == {"1,4,7,10", "*"}
    assert set(on["workflow_dispatch"]["inputs"]) == {"specs", "all", "promote", "runner"}


def test_build_and_promote_take_the_plan_matrix(wf: dict[Any, Any]) -> None:
    jobs = wf["jobs"]
    assert set(jobs) == {"plan", "build", "promote"}
    matrix = "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert jobs["build"]["strategy"]["matrix"] == matrix
    assert jobs["promote"]["strategy"]["matrix"] == matrix
    assert jobs["build"]["needs"] == "plan"
    assert jobs["promote"]["needs"] == ["plan", "build"]
    plan_step = next(s for s in steps(wf, "plan") if s.get("id") == "plan")
    assert "factory plan --format github" in plan_step["run"]


def test_plan_step_arguments_are_the_commands_own(wf: dict[Any, Any]) -> None:
    args = cli.build_parser().parse_args(["plan", "--format", "github", "--all", "specs/testbed.yaml"])
    assert (args.format, args.all) == ("github", True)


def test_runner_labels_overridable_on_every_job(wf: dict[Any, Any]) -> None:
    for name, job in wf["jobs"].items():
        assert "inputs.runner || vars.FACTORY_RUNNER" in job["runs-on"], name


def test_build_enables_kvm_with_the_udev_rule_and_runs_the_script(wf: dict[Any, Any]) -> None:
    runs = [s.get("run", "") for s in steps(wf, "build")]
    kvm = next(r for r in runs if "99-kvm4all.rules" in r)
    assert f"echo '{UDEV}' | sudo tee /etc/udev/rules.d/99-kvm4all.rules" in kvm
    assert "sudo udevadm control --reload-rules" in kvm
    assert "sudo udevadm trigger --name-match=kvm" in kvm
    assert any(r.startswith(".github/scripts/build.sh ") for r in runs)


def test_build_uploads_record_logs_junit_sbom_and_publishes_a_check(wf: dict[Any, Any]) -> None:
    uploads = [
        s["with"] for s in steps(wf, "build") if s.get("uses", "").startswith("actions/upload-artifact@")
    ]
    paths = "\n".join(u["path"] for u in uploads)
    for what in ("record.json", "logs/", "junit.xml", "sbom*", "records/", "promote/"):
        assert what in paths, what
    check = next(
        s for s in steps(wf, "build") if s.get("uses", "").startswith("mikepenz/action-junit-report@")
    )
    assert check["with"]["report_paths"].endswith("junit.xml")
    assert wf["jobs"]["build"]["permissions"]["checks"] == "write"


def test_media_cache_is_keyed_by_the_iso_sha256(wf: dict[Any, Any]) -> None:
    cache = next(s for s in steps(wf, "build") if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["key"] == "iso-${{ matrix.iso_sha256 }}"
    private = next(s for s in steps(wf, "build") if "private location" in s.get("name", ""))
    assert private["env"]["ISO_URL"].startswith("${{ secrets[")
    assert "sha256sum -c" in private["run"]


def test_promote_uses_oidc_and_no_stored_keys(wf: dict[Any, Any]) -> None:
    promote = wf["jobs"]["promote"]
    assert promote["permissions"] == {"contents": "read", "id-token": "write"}
    assert promote["environment"] == "images"
    assert any("factory promote " in s.get("run", "") for s in promote["steps"])
    text = WORKFLOW.read_text()
    assert not re.search(r"AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|aws-secret-access-key", text)
    # Only the promote job may ask for an OIDC token.
    for name, job in wf["jobs"].items():
        if name != "promote":
            assert "id-token" not in job.get("permissions", {}), name
    assert wf["permissions"] == {"contents": "read"}


def test_every_action_is_pinned_to_a_version(wf: dict[Any, Any]) -> None:
    uses = [s["uses"] for job in wf["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", ref), ref


def test_no_expression_expands_inside_a_script(wf: dict[Any, Any]) -> None:
    # `${{ inputs.* }}` (or any value) in a run: would be pasted into the shell text; env: instead.
    for job in wf["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step.get("name")


def test_build_script_unknown_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(SCRIPT), "no-such-spec", str(tmp_path / "out")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: specs/no-such-spec.yaml: spec not found\n"
    assert not (tmp_path / "out").exists()


def test_build_script_unknown_build_command_is_exit_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FACTORY_BUILD_VIA": "make"}
    proc = subprocess.run(
        [str(SCRIPT), "testbed", str(tmp_path / "out")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: FACTORY_BUILD_VIA must be tox or factory, not make\n"
    assert not (tmp_path / "out").exists()
