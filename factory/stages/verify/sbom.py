"""The image's software bill of materials: its package inventory as CycloneDX 1.6 JSON.

    document(inventory, name=..., version=..., image_sha256=...) -> str
    write(path, ...) -> sha256 of the file
    validate(text) -> None or the first schema error

One component per installed package, with a package URL (purl) as package scanners expect it
(`pkg:rpm/centos/bash@4.2.46-19.el7?arch=x86_64&distro=centos-7`, `pkg:deb/debian/libc6@2.36-9?arch=amd64`,
epoch as its own qualifier) and the licenses the package database declares. The metadata component is the
image itself, carrying its sha256: the SBOM is bound to one image as the other exports are.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from factory import __version__
from factory.core import digest
from factory.core.record import atomic_write_text
from factory.stages.verify.inventory import Inventory, Package

SCHEMA = SchemaVersion.V1_6
# purl types by package format (github.com/package-url/purl-spec, PURL-TYPES).
PURL_TYPE = {"rpm": "rpm", "dpkg": "deb"}
_licenses = LicenseFactory()


def purl(inventory: Inventory, package: Package) -> PackageURL:
    """The package URL: namespace is the distribution (os-release ID), version is version[-release]."""
    qualifiers = {"arch": package.arch}
    if package.epoch is not None:
        qualifiers["epoch"] = str(package.epoch)
    if inventory.distro_version:
        qualifiers["distro"] = f"{inventory.distro_id}-{inventory.distro_version}"
    version = package.version if package.release is None else f"{package.version}-{package.release}"
    return PackageURL(
        type=PURL_TYPE[inventory.format],
        namespace=inventory.distro_id,
        name=package.name,
        version=version,
        qualifiers=qualifiers,
    )


def _license(text: str) -> DisjunctiveLicense | LicenseExpression:
    # An SPDX id or expression where the text is one (newer EL, some DEP-5 files); rpm's "GPLv2+ and
    # BSD" and Debian's "GPL-2+" are not, and go in as a license *name*, unchanged.
    return _licenses.make_from_string(text)


def component(inventory: Inventory, package: Package) -> Component:
    url = purl(inventory, package)
    licenses = [_license(text) for text in package.licenses]
    # CycloneDX allows either one expression or any number of named/id licenses, not a mix.
    if len(licenses) > 1 and any(isinstance(x, LicenseExpression) for x in licenses):
        licenses = [DisjunctiveLicense(name=text) for text in package.licenses]
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.evr(),
        purl=url,
        bom_ref=url.to_string(),
        licenses=licenses,
    )


def bom(
    inventory: Inventory, *, name: str, version: str, image_sha256: str, timestamp: dt.datetime | None = None
) -> Bom:
    distro = f"{inventory.distro_id} {inventory.distro_version}".strip()
    image = Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=name,
        version=version,
        bom_ref=f"image:{name}@{version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_sha256)],
        properties=[
            Property(name="factory:distro", value=distro),
            Property(name="factory:kernel", value=inventory.kernel),
            Property(name="factory:package-format", value=inventory.format),
        ],
    )
    metadata = BomMetaData(
        component=image,
        timestamp=timestamp or dt.datetime.now(dt.UTC),
        # CycloneDX >= 1.5 names the tool that made the BOM as a component.
        tools=ToolRepository(
            components=[Component(type=ComponentType.APPLICATION, name="image-factory", version=__version__)]
        ),
    )
    components = [component(inventory, package) for package in inventory.packages]
    doc = Bom(metadata=metadata, components=components)
    # The image contains every package: one edge list, added at once (Bom.register_dependency searches the
    # graph linearly per call; the serialiser still adds an entry per package itself, as 1.6 asks).
    doc.dependencies.add(
        Dependency(ref=image.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in components])
    )
    return doc


def document(
    inventory: Inventory, *, name: str, version: str, image_sha256: str, timestamp: dt.datetime | None = None
) -> str:
    """The SBOM as CycloneDX 1.6 JSON.

    Not validated here: the library serialises its typed model to the schema, and the tests validate
    what this module makes (tests/unit/test_sbom.py, the VM test's real inventory). Validating every build
    would cost seconds to tens of seconds (jsonschema's uniqueItems is quadratic in the package count:
    17 s for 900 packages on a loaded 2-core host, bench/package_inventory.py)."""
    text: str = JsonV1Dot6(
        bom(inventory, name=name, version=version, image_sha256=image_sha256, timestamp=timestamp)
    ).output_as_string(indent=1)
    return text + "\n"


def validate(text: str) -> str | None:
    """None when `text` is valid CycloneDX 1.6 JSON (strict: no unknown properties), else the error."""
    error = JsonStrictValidator(SCHEMA).validate_str(text)
    return None if error is None else str(error)


def write(path: Path, inventory: Inventory, *, name: str, version: str, image_sha256: str) -> str:
    """Write the SBOM atomically; returns the file's sha256."""
    text = document(inventory, name=name, version=version, image_sha256=image_sha256)
    atomic_write_text(path, text)
    return digest.sha256_text(text)
