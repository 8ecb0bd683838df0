"""The spec's compliance section: bad inputs (one named case each), the EL specs' profiles against SCAP
Security Guide 0.1.65 (Debian's ssg-nondebian), and the kickstart the factory serves with %addon."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import EXIT_USAGE, SpecError, ToolError
from factory.host import capabilities
from factory.spec import load_spec
from factory.stages.compliance import scap
from factory.stages.validate.flatten import flatten_for_spec
from factory.stages.validate.validate import validate_spec

ROOT = Path(__file__).resolve().parents[2]
TESTBED_PROFILE = "xccdf_org.imagefactory_profile_testbed"
RULE = "xccdf_org.imagefactory_rule_file_permissions_etc_shadow"
SPEC = """\
name: tb
os: testbed
media: {builtin: testbed, volume_label: TESTBED}
kickstart: {path: ks.cfg}
"""


def write(tmp_path: Path, compliance: str) -> Path:
    (tmp_path / "ks.cfg").write_text("text\nshutdown\n")
    f = tmp_path / "tb.yaml"
    f.write_text(SPEC + compliance)
    return f


def problems(tmp_path: Path, compliance: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, compliance))
    assert err.value.exit_code == EXIT_USAGE
    return err.value.problems


# -- bad inputs ---------------------------------------------------------------------------------


def test_unknown_profile_lists_the_profiles_of_the_datastream(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, "compliance: {profile: xccdf_org.imagefactory_profile_nope}\n")
    assert msg.startswith("compliance.profile: 'xccdf_org.imagefactory_profile_nope' is not a profile")
    assert "xccdf_org.imagefactory_profile_testbed," in msg
    assert "xccdf_org.imagefactory_profile_testbed_ssh" in msg


def test_waiver_without_reason(tmp_path: Path) -> None:
    found = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, waivers: [{{rule: {RULE}}}]}}\n")
    assert found == ["compliance.waivers.0.reason: Field required"]


def test_waiver_with_blank_reason(tmp_path: Path) -> None:
    text = f"compliance: {{profile: {TESTBED_PROFILE}, waivers: [{{rule: {RULE}, reason: '     '}}]}}\n"
    (msg,) = problems(tmp_path, text)
    assert msg.startswith("compliance.waivers.0.reason: give the reason")


def test_waiver_of_an_unknown_rule(tmp_path: Path) -> None:
    text = f"compliance: {{profile: {TESTBED_PROFILE}, waivers: [{{rule: no_such_rule, reason: why not}}]}}\n"
    (msg,) = problems(tmp_path, text)
    assert msg.startswith("compliance.waivers.0.rule: 'no_such_rule' is not a rule of testbed-ds.xml")


def test_rule_waived_twice(tmp_path: Path) -> None:
    w = f"{{rule: {RULE}, reason: first}}"
    (msg,) = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, waivers: [{w}, {w}]}}\n")
    assert "waived more than once" in msg


def test_unknown_field_in_compliance(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, remediate: true}}\n")
    assert msg == "compliance.remediate: unknown field"


def test_missing_profile(tmp_path: Path) -> None:
    assert problems(tmp_path, "compliance: {waivers: []}\n") == ["compliance.profile: Field required"]


def test_given_datastream_missing(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, datastream: nope-ds.xml}}\n")
    assert msg == f"compliance.datastream: {tmp_path / 'nope-ds.xml'} does not exist"


def test_given_datastream_not_xml(tmp_path: Path) -> None:
    (tmp_path / "bad-ds.xml").write_text("not xml at all\n")
    (msg,) = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, datastream: bad-ds.xml}}\n")
    assert msg.startswith(f"compliance.datastream: {tmp_path / 'bad-ds.xml'}: not a SCAP source datastream")


def test_given_datastream_without_benchmark(tmp_path: Path) -> None:
    (tmp_path / "x-ds.xml").write_text("<root/>\n")
    (msg,) = problems(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}, datastream: x-ds.xml}}\n")
    assert "no XCCDF 1.2 Benchmark" in msg


def test_os_without_a_known_datastream(tmp_path: Path) -> None:
    (tmp_path / "ks.cfg").write_text("text\n")
    f = tmp_path / "c8.yaml"
    f.write_text(
        "name: c8\nos: centos\nos_release: '8.4'\nkickstart: {path: ks.cfg}\n"
        f"media: {{path: x.iso, sha256: {'a' * 64}, volume_label: X}}\n"
        "compliance: {profile: xccdf_org.ssgproject.content_profile_pci-dss}\n"
    )
    with pytest.raises(SpecError) as err:
        load_spec(f)
    assert err.value.problems[0].startswith("compliance.datastream: no SCAP Security Guide datastream")


def test_default_datastream_not_installed_is_a_host_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        scap.SSG_DATASTREAMS, ("centos", "7"), (tmp_path / "ssg-centos7-ds.xml", "ssg-nondebian")
    )
    # Loading the spec does not need the 1.6 GB package (`factory validate`, `plan`): the build's preflight
    # asks for it (and installs it with --install-host-deps), then checks the profile.
    spec = load_spec(ROOT / "specs" / "centos72.yaml")
    with pytest.raises(ToolError, match="apt-get install ssg-nondebian"):
        scap.spec_problems(spec)


# -- the EL specs against ssg-nondebian ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec_name", "datastream"),
    [
        pytest.param("centos72", "ssg-centos7-ds.xml", id="centos72"),
        pytest.param("ol72", "ssg-ol7-ds.xml", id="ol72"),
    ],
)
def test_el_spec_profile_is_in_ssg_datastream(spec_name: str, datastream: str) -> None:
    spec = load_spec(ROOT / "specs" / f"{spec_name}.yaml")
    assert spec.compliance is not None
    path = spec.compliance_datastream()
    assert path == scap.SSG_CONTENT / datastream
    content = scap.read_content(path)
    assert content.version == "0.1.65"
    assert spec.compliance.profile in content.profiles
    assert all(w.rule in content.rules for w in spec.compliance.waivers)


# -- the served kickstart -------------------------------------------------------------------------


def test_addon_kickstart_passes_the_kickstart_gate() -> None:
    spec = load_spec(ROOT / "specs" / "centos72.yaml")
    assert spec.compliance is not None
    assert spec.compliance.remediate_at_install
    flat = flatten_for_spec(spec)
    assert flat.text.endswith(
        "%addon org_fedora_oscap\n    content-type = scap-security-guide\n"
        f"    profile = {spec.compliance.profile}\n%end\n"
    )
    # The added lines map to the spec, not to a kickstart file.
    assert flat.origin(len(flat.lines)) == (spec.source.absolute(), 0)
    report = validate_spec(spec)
    assert report.ok, report.findings


def test_no_addon_without_remediate_at_install(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}}}\n"))
    assert "%addon" not in flatten_for_spec(spec).text


def test_addon_on_the_testbed_spec_passes_the_gate(tmp_path: Path) -> None:
    text = (ROOT / "specs" / "testbed.yaml").read_text().replace("../kickstarts/", f"{ROOT}/kickstarts/")
    text += f"compliance: {{profile: {TESTBED_PROFILE}, remediate_at_install: true}}\n"
    (tmp_path / "testbed.yaml").write_text(text)
    spec = load_spec(tmp_path / "testbed.yaml")
    assert f"profile = {TESTBED_PROFILE}" in flatten_for_spec(spec).text
    report = validate_spec(spec)
    assert report.ok, report.findings


def test_the_gate_parses_addon_sections(tmp_path: Path) -> None:
    # Proof that the gate reads what the addon adds: an addon the kickstart itself leaves open is a finding.
    (tmp_path / "ks.cfg").write_text("text\nshutdown\n%addon org_fedora_oscap\n    profile = x\n")
    f = tmp_path / "tb.yaml"
    f.write_text(SPEC)
    findings = validate_spec(load_spec(f)).findings
    assert any(x.rule == "syntax" and "%end" in x.message for x in findings), findings


# -- host capabilities ---------------------------------------------------------------------------


def test_compliance_spec_needs_openscap(tmp_path: Path) -> None:
    with_scan = load_spec(write(tmp_path, f"compliance: {{profile: {TESTBED_PROFILE}}}\n"))
    assert "openscap" in capabilities.needed_by(with_scan)
    (tmp_path / "plain.yaml").write_text(SPEC.replace("name: tb", "name: plain"))
    assert "openscap" not in capabilities.needed_by(load_spec(tmp_path / "plain.yaml"))


def test_openscap_probe_passes_here() -> None:
    status = capabilities.run_probe(capabilities.BY_NAME["openscap"])
    assert status.ok, status.detail


# -- the factory's own testbed datastream ----------------------------------------------------------


def test_testbed_datastream_is_a_valid_source_datastream() -> None:
    import subprocess

    proc = subprocess.run(
        ["oscap", "ds", "sds-validate", str(scap.TESTBED_DATASTREAM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_testbed_datastream_matches_its_sources() -> None:
    composed = scap.read_content(scap.TESTBED_DATASTREAM)
    source = scap.read_content(scap.TESTBED_DATASTREAM.with_name("testbed-xccdf.xml"))
    assert composed.profiles == source.profiles
    assert composed.rules == source.rules
    oval = scap.TESTBED_DATASTREAM.with_name("testbed-oval.xml").read_text()
    for definition in ("def:1", "def:2", "def:3"):
        assert f"oval:org.imagefactory.testbed:{definition}" in oval
