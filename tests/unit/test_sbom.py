"""The CycloneDX SBOM: valid against CycloneDX's own schema, one component per package, bound to the image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from factory.core import digest
from factory.host import tools
from factory.spec import Spec
from factory.stages.export import export
from factory.stages.verify import inventory, sbom

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"
SHA = "ab" * 32


def _doc(name: str) -> tuple[inventory.Inventory, dict[str, Any], str]:
    inv = inventory.parse((DATA / name).read_text())
    text = sbom.document(inv, name="img", version="20261202T000000Z-abcd", image_sha256=SHA)
    return inv, json.loads(text), text


@pytest.mark.parametrize("fixture", ["rpm-centos72.txt", "dpkg-bookworm.txt"])
def test_sbom_validates_against_the_cyclonedx_schema(fixture: str) -> None:
    inv, doc, text = _doc(fixture)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert sbom.validate(text) is None
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert len(doc["components"]) == len(inv.packages)
    # The image depends on every package: the dependency graph is complete.
    (root,) = [d for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"]]
    assert len(root["dependsOn"]) == len(inv.packages)


def test_the_metadata_component_is_the_image_with_its_sha256() -> None:
    _, doc, _ = _doc("rpm-centos72.txt")
    image = doc["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == (
        "operating-system",
        "img",
        "20261202T000000Z-abcd",
    )
    assert image["hashes"] == [{"alg": "SHA-256", "content": SHA}]
    props = {p["name"]: p["value"] for p in image["properties"]}
    assert props["factory:kernel"] == "3.10.0-327.el7.x86_64" and props["factory:package-format"] == "rpm"


def _component(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in doc["components"] if c["name"] == name]
    return c


def test_rpm_purls_carry_distro_arch_and_epoch() -> None:
    _, doc, _ = _doc("rpm-centos72.txt")
    bash = _component(doc, "bash")
    assert bash["purl"] == "pkg:rpm/centos/bash@4.2.46-19.el7?arch=x86_64&distro=centos-7"
    openssl = PackageURL.from_string(_component(doc, "openssl")["purl"])
    assert openssl.version == "1.0.1e-42.el7.9" and openssl.qualifiers == {
        "arch": "x86_64",
        "epoch": "1",
        "distro": "centos-7",
    }
    assert _component(doc, "openssl")["version"] == "1:1.0.1e-42.el7.9"


def test_deb_purls() -> None:
    _, doc, _ = _doc("dpkg-bookworm.txt")
    attr = PackageURL.from_string(_component(doc, "attr")["purl"])
    assert (attr.type, attr.namespace, attr.name, attr.version) == ("deb", "debian", "attr", "2.5.1-4")
    assert attr.qualifiers == {"arch": "amd64", "epoch": "1", "distro": "debian-12"}
    assert _component(doc, "adduser")["purl"] == "pkg:deb/debian/adduser@3.134?arch=all&distro=debian-12"


def test_licenses_as_the_package_database_declares_them() -> None:
    _, doc, _ = _doc("rpm-centos72.txt")
    # An SPDX id where the text is one; rpm's own license strings go in as names, unchanged.
    assert _component(doc, "libffi")["licenses"] == [{"license": {"id": "MIT"}}]
    assert _component(doc, "systemd")["licenses"] == [{"license": {"name": "LGPLv2+ and MIT and GPLv2+"}}]
    _, deb, _ = _doc("dpkg-bookworm.txt")
    assert [x["license"] for x in _component(deb, "attr")["licenses"]] == [
        {"name": "GPL-2+"},
        {"name": "LGPL-2+"},
    ]
    # No DEP-5 copyright: no license claimed.
    assert "licenses" not in _component(deb, "libc6")


def test_several_licenses_one_of_them_an_expression_stay_valid() -> None:
    inv = inventory.Inventory(
        "dpkg",
        "debian",
        "12",
        "k",
        (inventory.Package("x", "amd64", None, "1", "1", ("MIT OR Apache-2.0", "GPL-2+")),),
    )
    text = sbom.document(inv, name="img", version="v", image_sha256=SHA)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    # CycloneDX has one expression or any number of named licenses: both go in as names.
    names = {x["license"]["name"] for x in json.loads(text)["components"][0]["licenses"]}
    assert names == {"MIT OR Apache-2.0", "GPL-2+"}


def test_export_writes_the_sbom_and_lists_it_in_the_manifest(tmp_path: Path) -> None:
    disk = tmp_path / "sealed.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "1M"], timeout=60)
    sealed_sha = digest.sha256_file(disk)
    spec = Spec.model_validate(
        {
            "name": "img",
            "os": "centos",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": "t.ks"},
            "export": ["qcow2"],
            "source": tmp_path / "spec.yaml",
        }
    )
    inv = inventory.parse((DATA / "rpm-centos72.txt").read_text())
    out = tmp_path / "export"
    result = export.export(spec, disk, sealed_sha, out, build_id="b1", inventory=inv)
    assert result.sbom == out / "img.cdx.json"
    manifest = json.loads(result.manifest.read_text())
    entry = manifest["sbom"]
    assert entry["sha256"] == digest.sha256_file(result.sbom)
    assert entry["components"] == len(inv.packages) and entry["source_sha256"] == sealed_sha
    assert (out / "img.cdx.json.sha256").read_text() == f"{entry['sha256']}  img.cdx.json\n"
    doc = json.loads(result.sbom.read_text())
    assert doc["metadata"]["component"]["hashes"][0]["content"] == sealed_sha
    # Without an inventory (a build verified before inventories were recorded) there is no SBOM.
    again = export.export(spec, disk, sealed_sha, tmp_path / "plain", build_id="b1")
    assert again.sbom is None and "sbom" not in json.loads(again.manifest.read_text())


def test_validate_reports_a_broken_document() -> None:
    _, doc, _ = _doc("rpm-centos72.txt")
    doc["components"][0]["purl"] = 42
    doc["unknownField"] = True
    assert sbom.validate(json.dumps(doc)) is not None
