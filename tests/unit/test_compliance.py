"""The compliance gate on real ext4 images (mkfs.ext4 -d, no VM) scanned offline by the real oscap.

The testbed datastream (stages/compliance/scap/) has three rules; each test plants a tree where they
hold, then breaks one on purpose.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from factory import cli
from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import EXIT_VERIFY, ComplianceError, ToolError, VerifyError
from factory.spec import Spec, load_spec
from factory.stages.compliance import compliance, scap
from factory.stages.seal.seal import SealResult

pytestmark = pytest.mark.skipif(shutil.which("oscap") is None, reason="needs oscap (openscap-scanner)")

RULE = "xccdf_org.imagefactory_rule_sshd_disable_root_password_login"
PROFILE = "xccdf_org.imagefactory_profile_testbed"
SPEC = """\
name: tb
os: testbed
media: {{builtin: testbed, volume_label: TESTBED}}
kickstart: {{path: ks.cfg}}
expect:
  filesystems: [{{mount: /, fstype: ext4}}]
compliance:
{compliance}
"""


def write_spec(tmp_path: Path, compliance_yaml: str) -> Path:
    (tmp_path / "ks.cfg").write_text("text\nshutdown\n")
    f = tmp_path / "tb.yaml"
    f.write_text(SPEC.format(compliance=compliance_yaml))
    return f


def _sealed(image: Path, sha: str) -> SealResult:
    return SealResult(
        sealed_image=image, source_sha256=sha, sealed_sha256=sha, recheck_passed=True, removed=()
    )


def make_spec(tmp_path: Path, waivers: str = "[]") -> Spec:
    return load_spec(write_spec(tmp_path, f"  profile: {PROFILE}\n  waivers: {waivers}\n"))


def make_image(tmp_path: Path, sshd_config: str = "#PermitRootLogin prohibit-password\n") -> Path:
    """A real ext4 filesystem image holding a small root tree (owners: root, as mkfs.ext4 -d copies)."""
    tree = tmp_path / "tree"
    (tree / "etc" / "ssh").mkdir(parents=True)
    (tree / "etc" / "ssh" / "sshd_config").write_text(sshd_config)
    shadow = tree / "etc" / "shadow"
    shadow.write_text("root:$6$salt$hash:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    shadow.chmod(0o640)
    (tree / "etc" / "os-release").write_text("ID=testbed\n")
    image = tmp_path / "sealed.img"
    from factory.host import tools

    tools.run(["mkfs.ext4", "-q", "-F", "-d", tree, "-L", "root", image, "16M"], timeout=60)
    shutil.rmtree(tree)
    return image


def sealed_build(tmp_path: Path, image: Path) -> tuple[BuildDir, str]:
    build = BuildDir.create(tmp_path / "build", "tb")
    sha = digest.sha256_file(image)
    build.record_stage("seal", "ok", result=_sealed(image, sha))
    return build, sha


# -- the gate ------------------------------------------------------------------------------------


def test_clean_image_passes_and_binds_result_to_image(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    build, sha = sealed_build(tmp_path, image)
    result = compliance.gate(make_spec(tmp_path), build, image, sha)
    assert result.passed
    assert (result.counts.passed, result.counts.failed, result.counts.waived) == (3, 0, 0)
    assert result.reader == "debugfs"
    assert result.report_sha256 == digest.sha256_file(build.path / "compliance" / "report.html")
    assert result.arf_sha256 == digest.sha256_file(build.path / "compliance" / "arf.xml")
    recorded = BuildDir.open(build.path).stage("compliance") or {}
    assert recorded["status"] == "ok"
    assert recorded["result"]["image_sha256"] == sha
    assert recorded["result"]["datastream_version"] == "1.0"
    assert compliance.recorded_line(build) == f"{PROFILE}: 3 passed / 0 failed / 0 waived"
    # Nothing of the extracted tree is left behind in the build directory.
    assert sorted(p.name for p in (build.path / "compliance").iterdir()) == [
        "arf.xml",
        "junit.xml",
        "report.html",
    ]


def test_rule_failing_on_purpose_fails_the_gate(tmp_path: Path) -> None:
    image = make_image(tmp_path, sshd_config="PermitRootLogin yes\n")
    build, sha = sealed_build(tmp_path, image)
    with pytest.raises(ComplianceError) as err:
        compliance.gate(make_spec(tmp_path), build, image, sha)
    assert err.value.exit_code == EXIT_VERIFY
    assert RULE in err.value.message
    recorded = BuildDir.open(build.path).stage("compliance") or {}
    assert recorded["status"] == "failed"
    assert recorded["result"]["counts"] == {"passed": 2, "failed": 1, "waived": 0, "other": 0}
    suite = ET.parse(build.path / "compliance" / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [RULE]
    assert cases[0].find("failure") is not None
    with pytest.raises(VerifyError, match="has not passed"):
        compliance.publish_metadata(make_spec(tmp_path), build)


def test_same_rule_waived_passes_with_the_reason_in_the_record(tmp_path: Path) -> None:
    image = make_image(tmp_path, sshd_config="PermitRootLogin yes\n")
    build, sha = sealed_build(tmp_path, image)
    spec = make_spec(tmp_path, waivers=f'[{{rule: {RULE}, reason: "lab image, console only"}}]')
    result = compliance.gate(spec, build, image, sha)
    assert result.passed
    assert (result.counts.passed, result.counts.failed, result.counts.waived) == (2, 0, 1)
    recorded = (BuildDir.open(build.path).stage("compliance") or {})["result"]
    assert recorded["waived"][0]["rule"] == RULE
    assert recorded["waived"][0]["waiver"] == "lab image, console only"
    skipped = ET.parse(build.path / "compliance" / "junit.xml").getroot().find("testcase/skipped")
    assert skipped is not None
    assert skipped.get("message") == "waived: lab image, console only"
    meta = compliance.publish_metadata(spec, build)
    assert meta["waived"] == "1"
    assert meta["failed"] == "0"
    assert meta["image-sha256"] == sha
    assert meta["report-sha256"] == recorded["report_sha256"]


def test_waiver_of_a_passing_rule_is_reported_unused(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    build, sha = sealed_build(tmp_path, image)
    spec = make_spec(tmp_path, waivers=f"[{{rule: {RULE}, reason: kept for old images}}]")
    result = compliance.gate(spec, build, image, sha)
    assert result.unused_waivers == (RULE,)
    assert result.counts.waived == 0


def test_unreadable_image_is_a_tool_error_and_recorded(tmp_path: Path) -> None:
    build, _ = sealed_build(tmp_path, make_image(tmp_path))
    with pytest.raises(ToolError, match="qemu-img"):
        compliance.gate(make_spec(tmp_path), build, tmp_path / "gone.qcow2", "0" * 64)
    assert (BuildDir.open(build.path).stage("compliance") or {})["status"] == "failed"


def test_oscap_failing_to_evaluate_is_a_tool_error(tmp_path: Path) -> None:
    (tmp_path / "root" / "etc").mkdir(parents=True)
    arf, report = tmp_path / "arf.xml", tmp_path / "report.html"
    with pytest.raises(ToolError, match="oscap could not evaluate"):
        compliance.evaluate(scap.TESTBED_DATASTREAM, "no_such_profile", tmp_path / "root", arf, report)
    assert not arf.exists()
    assert not report.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_error_results_fail_and_notapplicable_counts_as_other() -> None:
    results = (
        scap.RuleResult("r1", "pass", "", ""),
        scap.RuleResult("r2", "error", "t2", "high"),
        scap.RuleResult("r3", "notapplicable", "", ""),
        scap.RuleResult("r4", "fail", "t4", "low"),
        scap.RuleResult("r5", "notselected", "", ""),
    )
    counts, failing, waived, unused = compliance.judge(results, {"r4": "accepted", "r9": "old"})
    assert counts == compliance.Counts(passed=1, failed=1, waived=1, other=1)
    assert [f.rule for f in failing] == ["r2"]
    assert [(w.rule, w.waiver) for w in waived] == [("r4", "accepted")]
    assert unused == ("r9",)


# -- the publish hook ----------------------------------------------------------------------------


def test_publish_metadata_refuses_a_build_never_scanned(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    build, _ = sealed_build(tmp_path, image)
    with pytest.raises(VerifyError, match="not run"):
        compliance.publish_metadata(make_spec(tmp_path), build)


def test_publish_metadata_refuses_a_scan_of_another_image(tmp_path: Path) -> None:
    image = make_image(tmp_path)
    build, sha = sealed_build(tmp_path, image)
    compliance.gate(make_spec(tmp_path), build, image, sha)
    build.record_stage("seal", "ok", result=_sealed(image, "f" * 64))
    with pytest.raises(VerifyError, match="not of the sealed image"):
        compliance.publish_metadata(make_spec(tmp_path), build)


def test_publish_metadata_refuses_a_verdict_under_other_waivers(tmp_path: Path) -> None:
    image = make_image(tmp_path, sshd_config="PermitRootLogin yes\n")
    build, sha = sealed_build(tmp_path, image)
    compliance.gate(make_spec(tmp_path, waivers=f"[{{rule: {RULE}, reason: lab only}}]"), build, image, sha)
    with pytest.raises(VerifyError, match="another compliance section"):
        compliance.publish_metadata(make_spec(tmp_path), build)


def test_publish_metadata_is_empty_without_a_compliance_section(tmp_path: Path) -> None:
    (tmp_path / "ks.cfg").write_text("text\n")
    f = tmp_path / "plain.yaml"
    f.write_text(SPEC.split("compliance:", maxsplit=1)[0].replace("{{", "{").replace("}}", "}"))
    build = BuildDir.create(tmp_path / "build", "tb")
    assert compliance.publish_metadata(load_spec(f), build) == {}


def test_ami_tags_carry_the_compliance_result(tmp_path: Path) -> None:
    from factory.targets.aws.promote import compliance_tags

    image = make_image(tmp_path)
    build, sha = sealed_build(tmp_path, image)
    spec = make_spec(tmp_path)
    compliance.gate(spec, build, image, sha)
    tags = compliance_tags(spec, build)
    assert tags["factory:compliance-profile"] == PROFILE
    assert tags["factory:compliance-passed"] == "3"
    assert tags["factory:compliance-image-sha256"] == sha
    # AWS limits: key 128, value 256 characters.
    assert all(len(k) <= 128 and len(v) <= 256 for k, v in tags.items())


# -- factory verify --compliance-only --------------------------------------------------------------


def test_verify_compliance_only_rescans_the_sealed_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path, sshd_config="PermitRootLogin yes\n")
    build, _ = sealed_build(tmp_path, image)
    spec_file = write_spec(tmp_path, f"  profile: {PROFILE}\n")
    args = ["verify", str(spec_file), "--build", str(build.path), "--compliance-only"]
    assert cli.main(args) == EXIT_VERIFY
    assert RULE in capsys.readouterr().err
    waived = f"  profile: {PROFILE}\n  waivers: [{{rule: {RULE}, reason: accepted for the lab}}]\n"
    write_spec(tmp_path, waived)
    assert cli.main(args) == 0
    assert "2 passed / 0 failed / 1 waived" in capsys.readouterr().out
    record = json.loads((build.path / "record.json").read_text())
    assert record["stages"]["compliance"]["status"] == "ok"


def test_verify_compliance_only_refuses_an_unsealed_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = BuildDir.create(tmp_path / "build", "tb")
    spec_file = write_spec(tmp_path, f"  profile: {PROFILE}\n")
    assert cli.main(["verify", str(spec_file), "--build", str(build.path), "--compliance-only"]) == 2
    assert "no sealed image" in capsys.readouterr().err


def test_verify_compliance_only_refuses_a_changed_sealed_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = make_image(tmp_path)
    build, _ = sealed_build(tmp_path, image)
    with image.open("r+b") as f:
        f.seek(8 << 20)
        f.write(b"changed")
    spec_file = write_spec(tmp_path, f"  profile: {PROFILE}\n")
    assert cli.main(["verify", str(spec_file), "--build", str(build.path), "--compliance-only"]) == 6
    assert "not the sealed image the build recorded" in capsys.readouterr().err


# -- the pipeline: compliance after seal, before export ------------------------------------------


def test_pipeline_scans_after_seal_and_stops_before_export(tmp_path: Path) -> None:
    from fake_stages import FakeResult, Log, table

    from factory import pipeline
    from factory.commands.build import compliance_lines
    from factory.stages.compliance.stage import ComplianceStage

    image = make_image(tmp_path, sshd_config="PermitRootLogin yes\n")
    sealed = FakeResult("seal", sealed_image=image, sealed_sha256=digest.sha256_file(image))
    log = Log()
    # The stages around the scan are fakes with the stage interface; the scan itself is real.
    stages = tuple(table(log, seal={"result": sealed}, compliance=ComplianceStage()).values())
    options = pipeline.Options(build_root=tmp_path / "build")
    failed = pipeline.run_build(make_spec(tmp_path), options, log.sink, stages)
    assert failed.exit_code == EXIT_VERIFY
    assert list(failed.stages)[-2:] == ["seal", "compliance"]
    assert failed.stages["compliance"]["status"] == "failed"
    assert "export" not in log.calls
    assert compliance_lines([failed]) == [f"compliance: tb: {PROFILE}: 2 passed / 1 failed / 0 waived"]

    # The same build with the rule waived: the verified, sealed image is reused; only the scan runs again.
    spec = make_spec(tmp_path, waivers=f"[{{rule: {RULE}, reason: lab only}}]")
    log.calls.clear()
    passed = pipeline.run_build(spec, options, log.sink, stages)
    assert passed.error is None, passed.error
    assert passed.build_dir == failed.build_dir
    assert log.calls == ["validate", "media", "export"]
    assert [n for n, st in passed.stages.items() if st["status"] == "ok"] == [
        "validate",
        "media",
        "compliance",
        "export",
    ]
    assert passed.compliance == f"{PROFILE}: 2 passed / 0 failed / 1 waived"
    assert log.calls[-1] == "export"
    assert passed.stages["compliance"]["status"] == "ok"
