"""Packages: testinfra's package module reads rpm or dpkg, whichever the image has."""

from __future__ import annotations

from testinfra.host import Host


def test_packages_required(host: Host, required_package: str) -> None:
    assert host.package(required_package).is_installed, f"{required_package} is not installed"


def test_packages_forbidden(host: Host, forbidden_package: str) -> None:
    assert not host.package(forbidden_package).is_installed, f"{forbidden_package} is installed"
