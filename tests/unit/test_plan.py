"""`factory plan`: matrix contents, change detection against verified build records, the GitHub format,
a spec too big for a hosted runner, and bad specs (one line naming the spec, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory import cli, plan
from factory.core.record import BuildDir
from factory.errors import EXIT_USAGE
from factory.pipeline import build_inputs
from factory.spec import load_spec

SHA = "907e5755f824c5848b9c8efbb484f3cd945e93faa024bad6ba875226f9683b16"
ROLE = "arn:aws:iam::333333333333:role/image-factory-promote"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACTORY_BUILD_DIR", raising=False)
    (tmp_path / "specs").mkdir()
    (tmp_path / "kickstarts").mkdir()
    (tmp_path / "kickstarts" / "el.ks").write_text("text\nreboot\n%include common.ks\n")
    (tmp_path / "kickstarts" / "common.ks").write_text("lang en_US.UTF-8\n")


def write_spec(name: str, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "name": name,
        "os": "centos",
        "media": {"url": "https://example.invalid/el.iso", "sha256": SHA, "volume_label": "EL"},
        "kickstart": {"path": "../kickstarts/el.ks"},
        "vm": {"memory_mib": 2048, "cpus": 2, "disk_gib": 2, "accel": "kvm"},
        "export": ["raw", "qcow2"],
        "aws": {
            "source_profile": "build",
            "source_region": "us-east-1",
            "source_web_identity": {"role_arn": ROLE, "token_from": "github-actions"},
            "targets": [
                {
                    "profile": "prod",
                    "regions": {"us-east-1": "alias/k", "eu-west-1": "alias/k"},
                    "web_identity": {"role_arn": ROLE, "token_from": "github-actions"},
                },
                {"profile": "staging", "regions": {"us-west-2": "alias/k"}},
            ],
        },
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        elif value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    path = Path("specs") / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def verified_build(
    spec_file: Path, build_id: str, *, verified: bool = True, key: str | None = None
) -> BuildDir:
    """A build record as `factory build` leaves it: the key, its inputs, the verify stage's status."""
    spec = load_spec(spec_file)
    real_key, inputs = build_inputs(spec, SHA)
    build = BuildDir.create(Path("build"), spec.name, build_id)
    build.set("key", key or real_key)
    build.set("inputs", inputs)
    build.record_stage("install", "ok")
    build.record_stage("verify", "ok" if verified else "failed", result={"passed": verified})
    return build


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_matrix_has_resources_targets_and_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec("el")
    code, out, err = run_plan(capsys)
    assert (code, err) == (0, "")
    [entry] = json.loads(out)
    assert entry["spec"] == "el"
    assert entry["spec_file"] == "specs/el.yaml"
    # install disk + sealed copy + 2 exports, each up to the 2 GiB disk, plus a DVD-sized ISO (not at hand).
    assert entry["resources"] == {
        "cores": 2,
        "memory_mib": 2048 + plan.HOST_OVERHEAD_MIB,
        "disk_gib": 4 * 2 + plan.DVD_GIB,
        "kvm": "required",
    }
    assert entry["targets"] == [
        {"profile": "prod", "regions": ["us-east-1", "eu-west-1"], "credentials": "web-identity"},
        {"profile": "staging", "regions": ["us-west-2"], "credentials": "profile"},
    ]
    assert entry["aws_local"] is False
    assert entry["over_hosted_runner"] == []


def test_cached_iso_size_replaces_the_dvd_estimate(tmp_path: Path) -> None:
    iso = tmp_path / "cache" / "iso" / f"{SHA}.iso"
    iso.parent.mkdir(parents=True)
    with iso.open("wb") as fh:
        fh.truncate(3 * plan.GIB)
    res = plan.resources(load_spec(write_spec("el")))
    assert res.disk_gib == 4 * 2 + 3.0


@pytest.mark.parametrize(("accel", "kvm"), [("kvm", "required"), ("auto", "preferred"), ("tcg", "unused")])
def test_kvm_need_follows_the_spec_accel(accel: str, kvm: str) -> None:
    assert plan.resources(load_spec(write_spec("el", vm={"accel": accel}))).kvm == kvm


def test_never_built_spec_is_changed(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec("el")
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["changed"] is True
    assert entry["reason"] == "no verified build yet"
    assert entry["last_verified"] is None
    assert len(entry["key"]) == 64


def test_unchanged_since_a_verified_build_is_not_changed(capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("el")
    build = verified_build(spec, "20260901T000000Z-aaaa")
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["changed"] is False
    assert entry["reason"] == "unchanged since verified build 20260901T000000Z-aaaa"
    assert entry["key"] == build.record["key"]
    assert entry["last_verified"] == str(build.path)


def test_included_kickstart_edit_is_a_change(capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("el")
    verified_build(spec, "20260901T000000Z-aaaa")
    Path("kickstarts/common.ks").write_text("lang de_DE.UTF-8\n")
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["changed"] is True
    assert entry["reason"] == "kickstart changed since verified build 20260901T000000Z-aaaa"


def test_spec_edit_is_a_change(capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("el")
    verified_build(spec, "20260901T000000Z-aaaa")
    write_spec("el", vm={"memory_mib": 4096})
    [entry] = json.loads(run_plan(capsys)[1])
    assert (entry["changed"], entry["reason"]) == (
        True,
        "spec changed since verified build 20260901T000000Z-aaaa",
    )


def test_failed_verification_does_not_count(capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("el")
    verified_build(spec, "20260901T000000Z-aaaa", verified=False)
    [entry] = json.loads(run_plan(capsys)[1])
    assert (entry["changed"], entry["reason"]) == (True, "no verified build yet")


def test_newest_verified_build_is_the_one_compared(capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec("el")
    verified_build(spec, "20260101T000000Z-old0", key="0" * 64)
    verified_build(spec, "20260901T000000Z-new0")
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["reason"] == "unchanged since verified build 20260901T000000Z-new0"


def test_iso_sha256_from_an_unset_variable_is_planned_as_changed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLAN_TEST_SHA", raising=False)
    write_spec(
        "ol", media={"url": None, "sha256": None, "path_env": "PLAN_TEST_ISO", "sha256_env": "PLAN_TEST_SHA"}
    )
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["changed"] is True
    assert "PLAN_TEST_SHA is not set" in entry["reason"]
    assert entry["key"] is None
    assert (entry["iso_sha256"], entry["media_path_env"]) == (None, "PLAN_TEST_ISO")
    monkeypatch.setenv("PLAN_TEST_SHA", SHA)
    [entry] = json.loads(run_plan(capsys)[1])
    assert (entry["iso_sha256"], entry["reason"]) == (SHA, "no verified build yet")


def test_builtin_testbed_is_planned_as_changed(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec("tb", os="testbed", media={"url": None, "sha256": None, "builtin": "testbed"})
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["changed"] is True
    assert "known only once it is built" in entry["reason"]
    assert entry["resources"]["disk_gib"] == 4 * 2 + plan.TESTBED_MEDIA_GIB


def test_github_format_is_one_line_strategy_matrix_of_changed_specs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    verified_build(write_spec("same"), "20260901T000000Z-aaaa")
    write_spec("new")
    code, out, _ = run_plan(capsys, "--format", "github")
    assert code == 0
    assert out.count("\n") == 1  # one line, for `echo "matrix=$(...)" >> $GITHUB_OUTPUT`
    matrix = json.loads(out)
    assert list(matrix) == ["include"]
    [row] = matrix["include"]
    assert row == {
        "spec": "new",
        "spec_file": "specs/new.yaml",
        "cores": 2,
        "memory_mib": 2048 + plan.HOST_OVERHEAD_MIB,
        "disk_gib": 4 * 2 + plan.DVD_GIB,
        "kvm": "required",
        "targets": ["prod", "staging"],
        "promote": True,
        "aws_local": False,
        "iso_sha256": SHA,
        "media_env": "",
        "changed": True,
        "reason": "no verified build yet",
        "fits_hosted_runner": True,
        "over_hosted_runner": "",
    }
    code, out, _ = run_plan(capsys, "--format", "github", "--all")
    assert [r["spec"] for r in json.loads(out)["include"]] == ["new", "same"]


def test_github_format_nothing_to_build_is_an_empty_include(capsys: pytest.CaptureFixture[str]) -> None:
    verified_build(write_spec("same"), "20260901T000000Z-aaaa")
    assert json.loads(run_plan(capsys, "--format", "github")[1]) == {"include": []}


def test_spec_without_aws_has_nothing_to_promote(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec("local", aws=None)
    [row] = json.loads(run_plan(capsys, "--format", "github")[1])["include"]
    assert (row["targets"], row["promote"]) == ([], False)


def test_memory_over_a_hosted_runner_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    write_spec("big", vm={"memory_mib": 16384})
    [entry] = json.loads(run_plan(capsys)[1])
    assert entry["over_hosted_runner"] == ["memory"]
    [note] = entry["hosted_runner_notes"]
    assert note.startswith(f"memory: needs {16384 + plan.HOST_OVERHEAD_MIB} MiB")
    assert f"a hosted runner has {plan.HOSTED_RUNNER.memory_mib} MiB" in note
    [row] = json.loads(run_plan(capsys, "--format", "github")[1])["include"]
    assert (row["fits_hosted_runner"], row["over_hosted_runner"]) == (False, "memory")


def test_guest_just_under_the_runner_memory_fits() -> None:
    limit = plan.HOSTED_RUNNER.memory_mib - plan.HOST_OVERHEAD_MIB
    res = plan.resources(load_spec(write_spec("edge", vm={"memory_mib": limit})))
    assert plan.over_hosted(res) == ((), ())


def test_cores_and_disk_over_a_hosted_runner_are_flagged() -> None:
    res = plan.resources(load_spec(write_spec("wide", vm={"cpus": 8, "disk_gib": 20})))
    over, notes = plan.over_hosted(res)
    assert over == ("cores", "disk")
    assert notes[0] == "cores: needs 8, a hosted runner has 4"
    assert notes[1].startswith("disk: needs up to ")


def test_hosted_runner_figures_are_githubs_in_binary_units() -> None:
    # 4 vCPU, 16 GB, 14 GB (docs.github.com, standard runner for public repositories).
    assert plan.Host(cores=4, memory_mib=15258, disk_gib=13.04) == plan.HOSTED_RUNNER


BAD_SPECS: dict[str, tuple[str, str]] = {
    "unknown-field": (
        "name: bad\nos: centos\nmedia: {url: 'https://e.invalid/x.iso', sha256: '" + SHA + "', "
        "volume_label: X}\nkickstart: {path: ../kickstarts/el.ks}\nflavour: x\n",
        "flavour: unknown field",
    ),
    "not-yaml": ("name: [bad\n", "not valid YAML"),
    "empty": ("\n", "spec is empty"),
    "missing-include": (
        "name: bad\nos: centos\nmedia: {url: 'https://e.invalid/x.iso', sha256: '" + SHA + "', "
        "volume_label: X}\nkickstart: {path: ../kickstarts/broken.ks}\n",
        "nope.ks",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
def test_bad_spec_is_one_error_line_naming_it_and_exit_2(
    capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, expected = BAD_SPECS[case]
    Path("kickstarts/broken.ks").write_text("text\n%include nope.ks\n")
    good = write_spec("good")
    bad = Path("specs/bad.yaml")
    bad.write_text(text)
    code, out, err = run_plan(capsys, str(good), str(bad))
    assert code == EXIT_USAGE
    assert out == ""  # no partial matrix: a scheduled run must not silently drop a spec
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert str(bad) in lines[0]
    assert expected in lines[0]


def test_missing_spec_file_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_plan(capsys, "specs/nope.yaml")
    assert (code, out) == (EXIT_USAGE, "")
    assert err == "error: specs/nope.yaml: spec not found\n"


def test_no_specs_at_all_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_plan(capsys)
    assert code == EXIT_USAGE
    assert "nothing to plan" in err
