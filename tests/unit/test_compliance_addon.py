"""The `%addon org_fedora_oscap` the EL specs are served with, checked as EL 7 would take it.

What the add-on accepts is its EL 7 branch's parser (OpenSCAP/oscap-anaconda-addon rhel7-branch,
org_fedora_oscap/ks/oscap.py: the keys, the content types, content-url unless scap-security-guide); the
profile and ids it names are looked up in SCAP Security Guide 0.1.65 as Debian's ssg-nondebian ships it
(ssg-centos7-ds.xml, ssg-ol7-ds.xml), with the factory's reader and again with `oscap info`; the section
is compared with the one in SSG's own RHEL 7 PCI-DSS kickstart (ssg-nondebian ships it); and the whole
kickstart passes the factory's gate (pykickstart's RHEL7 handler + the policy rules, `factory validate`).
Each bad input has its own test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory.spec import load_spec
from factory.stages.compliance import scap
from factory.stages.validate import oscap_addon
from factory.stages.validate.flatten import flatten_for_spec
from factory.stages.validate.validate import Finding, validate_spec

ROOT = Path(__file__).resolve().parents[2]
SSG_KICKSTARTS = Path("/usr/share/scap-security-guide/kickstart")
PCI_DSS = "xccdf_org.ssgproject.content_profile_pci-dss"
EL_SPECS = [
    pytest.param("centos72", "ssg-centos7-ds.xml", id="centos72"),
    pytest.param("ol72", "ssg-ol7-ds.xml", id="ol72"),
]


@pytest.fixture
def ssg() -> Path:
    """SSG's content folder; skips without ssg-nondebian (1.6 GB), except in CI, which installs it."""
    if not (scap.SSG_CONTENT / "ssg-centos7-ds.xml").is_file() or not SSG_KICKSTARTS.is_dir():
        why = "ssg-nondebian is not installed (apt-get install ssg-nondebian; .ci/apt-packages.txt has it)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the EL %addon checks")
        pytest.skip(why)
    return scap.SSG_CONTENT


def served_addon(spec_name: str) -> oscap_addon.Section:
    spec = load_spec(ROOT / "specs" / f"{spec_name}.yaml")
    found = oscap_addon.sections(flatten_for_spec(spec).text)
    assert len(found) == 1, found
    return found[0]


def el_spec(tmp_path: Path, addon: str, *, compliance: bool = False) -> Path:
    """specs/centos72.yaml with its kickstart plus `addon` appended (the factory adds no %addon of its
    own unless `compliance`)."""
    raw = yaml.safe_load((ROOT / "specs" / "centos72.yaml").read_text())
    # The whole folder: centos72.ks %includes common/.
    shutil.copytree(ROOT / "kickstarts", tmp_path / "kickstarts")
    ks = tmp_path / "kickstarts" / "centos72.ks"
    ks.write_text(ks.read_text() + addon)
    raw["kickstart"]["path"] = str(ks)
    if compliance:
        raw["compliance"]["remediate_at_install"] = False
    else:
        del raw["compliance"]
    path = tmp_path / "centos72.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def addon_findings(tmp_path: Path, addon: str, *, compliance: bool = False) -> list[Finding]:
    report = validate_spec(load_spec(el_spec(tmp_path, addon, compliance=compliance)))
    return list(report.findings)


def section_line(tmp_path: Path, text: str) -> int:
    """The line of `text` in the test's kickstart file."""
    lines = (tmp_path / "kickstarts" / "centos72.ks").read_text().splitlines()
    return lines.index(text) + 1


# -- the served section, as the add-on reads it ------------------------------------------------------


@pytest.mark.parametrize(("spec_name", "datastream"), EL_SPECS)
def test_el_addon_uses_only_keys_the_addon_accepts(spec_name: str, datastream: str) -> None:
    section = served_addon(spec_name)
    keys = [key for _, key, _ in section.items]
    assert keys == ["content-type", "profile"]
    assert set(keys) <= oscap_addon.KEYS
    # scap-security-guide: the SSG datastream in the installer image itself, so no content-url to fetch.
    assert section.value("content-type") == "scap-security-guide"
    assert section.value("content-url") is None
    assert oscap_addon.problems(section, None) == []


@pytest.mark.parametrize(("spec_name", "datastream"), EL_SPECS)
def test_el_addon_profile_and_ids_are_in_the_ssg_datastream(
    spec_name: str, datastream: str, ssg: Path
) -> None:
    section = served_addon(spec_name)
    content = scap.read_content(ssg / datastream)
    profile = section.value("profile")
    assert profile == PCI_DSS
    assert profile in content.profiles
    # The section names no datastream-id/xccdf-id: the add-on takes the datastream's first data-stream and
    # checklist, which is unambiguous only when there is one of each.
    assert section.value("datastream-id") is None and section.value("xccdf-id") is None
    assert len(content.datastreams) == 1 and len(content.checklists) == 1, content
    assert oscap_addon.problems(section, content, PCI_DSS) == []
    # oscap itself finds the profile, in that very data-stream.
    proc = subprocess.run(
        ["oscap", "info", "--profile", profile, str(ssg / datastream)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"Stream: {content.datastreams[0]}\n" in proc.stdout
    assert f"Id: {profile}\n" in proc.stdout


def test_el_addon_is_the_one_of_ssg_own_rhel7_kickstart(ssg: Path) -> None:
    shipped = oscap_addon.sections(
        (SSG_KICKSTARTS / "ssg-rhel7-pci-dss-server-with-gui-oaa-ks.cfg").read_text()
    )
    assert len(shipped) == 1
    ours = served_addon("centos72")
    assert [(k, v) for _, k, v in ours.items] == [(k, v) for _, k, v in shipped[0].items]


def test_every_ssg_rhel7_kickstart_addon_passes_the_addon_check(ssg: Path) -> None:
    # The check is no stricter than SSG's own kickstarts for EL 7 (14 of them in 0.1.65).
    shipped = sorted(SSG_KICKSTARTS.glob("ssg-rhel7-*-ks.cfg"))
    assert len(shipped) >= 10
    for ks in shipped:
        found = oscap_addon.sections(ks.read_text())
        assert len(found) == 1, ks.name
        assert oscap_addon.problems(found[0], None) == [], ks.name


@pytest.mark.parametrize(("spec_name", "datastream"), EL_SPECS)
def test_el_kickstart_with_addon_passes_the_kickstart_gate(
    spec_name: str, datastream: str, ssg: Path
) -> None:
    report = validate_spec(load_spec(ROOT / "specs" / f"{spec_name}.yaml"))
    assert report.ok, report.findings


def test_factory_validate_passes_the_el_specs(ssg: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "factory", "validate", "specs/centos72.yaml", "specs/ol72.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- bad inputs, one test each --------------------------------------------------------------------------


def test_addon_unknown_key(tmp_path: Path) -> None:
    findings = addon_findings(
        tmp_path,
        f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    profile-id = {PCI_DSS}\n"
        f"    profile = {PCI_DSS}\n%end\n",
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("oscap-addon", section_line(tmp_path, f"    profile-id = {PCI_DSS}"))
    ]
    assert "unknown key 'profile-id'" in findings[0].message
    assert "datastream-id" in findings[0].message  # lists what the add-on accepts


def test_addon_profile_not_in_the_datastream(tmp_path: Path, ssg: Path) -> None:
    wrong = "xccdf_org.ssgproject.content_profile_cis"  # RHEL 7 has it; SSG's CentOS 7 datastream does not
    findings = addon_findings(
        tmp_path,
        f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    profile = {wrong}\n%end\n",
    )
    assert [(f.rule, f.line) for f in findings] == [
        ("oscap-addon", section_line(tmp_path, f"    profile = {wrong}"))
    ]
    assert "is not in ssg-centos7-ds.xml" in findings[0].message
    assert PCI_DSS in findings[0].message


def test_addon_datastream_id_not_in_the_datastream(tmp_path: Path, ssg: Path) -> None:
    wrong = "scap_org.open-scap_datastream_from_xccdf_ssg-ol7-xccdf.xml"
    findings = addon_findings(
        tmp_path,
        f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    datastream-id = {wrong}\n"
        f"    profile = {PCI_DSS}\n%end\n",
    )
    assert [f.rule for f in findings] == ["oscap-addon"]
    assert f"datastream-id '{wrong}' is not in ssg-centos7-ds.xml" in findings[0].message


def test_addon_missing_end(tmp_path: Path) -> None:
    findings = addon_findings(
        tmp_path,
        f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    profile = {PCI_DSS}\n",
    )
    assert any(f.rule == "syntax" and "%end" in f.message for f in findings), findings


def test_addon_unsupported_content_type(tmp_path: Path) -> None:
    findings = addon_findings(
        tmp_path, f"%addon org_fedora_oscap\n    content-type = ssg\n    profile = {PCI_DSS}\n%end\n"
    )
    assert [f.rule for f in findings] == ["oscap-addon"]
    assert "content-type 'ssg' is not one of" in findings[0].message


def test_addon_datastream_without_content_url(tmp_path: Path) -> None:
    findings = addon_findings(
        tmp_path, f"%addon org_fedora_oscap\n    content-type = datastream\n    profile = {PCI_DSS}\n%end\n"
    )
    assert [f.rule for f in findings] == ["oscap-addon"]
    assert "needs a content-url" in findings[0].message


def test_addon_without_profile(tmp_path: Path) -> None:
    findings = addon_findings(
        tmp_path, "%addon org_fedora_oscap\n    content-type = scap-security-guide\n%end\n"
    )
    assert [f.rule for f in findings] == ["oscap-addon"]
    assert "no profile" in findings[0].message


def test_addon_profile_other_than_the_scanned_one(tmp_path: Path, ssg: Path) -> None:
    other = "xccdf_org.ssgproject.content_profile_standard"  # in the datastream, but not what is scanned
    findings = addon_findings(
        tmp_path,
        f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    profile = {other}\n%end\n",
        compliance=True,
    )
    assert [f.rule for f in findings] == ["oscap-addon"]
    assert f"compliance.profile scans for '{PCI_DSS}'" in findings[0].message


def test_sections_read_lines_as_the_addon_does() -> None:
    text = (
        "text\n%addon org_fedora_oscap\n# a comment\n\n  content-type=scap-security-guide\n"
        '  profile = "x"\n%end\n%addon other_addon\n  profile = y\n%end\n'
    )
    (section,) = oscap_addon.sections(text)
    assert section.line == 2
    assert section.items == ((5, "content-type", "scap-security-guide"), (6, "profile", "x"))
