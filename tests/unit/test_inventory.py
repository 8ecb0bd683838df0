"""The package inventory: the guest query's output (rpm and dpkg formats) into typed packages, and back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from factory.errors import InputError, VerifyError
from factory.stages.verify import inventory
from factory.stages.verify.inventory import Package

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"


def _parse(name: str) -> inventory.Inventory:
    return inventory.parse((DATA / name).read_text())


def _by_name(inv: inventory.Inventory) -> dict[str, Package]:
    return {p.name: p for p in inv.packages}


def test_rpm_output_of_centos72() -> None:
    inv = _parse("rpm-centos72.txt")
    assert (inv.format, inv.distro_id, inv.distro_version) == ("rpm", "centos", "7")
    assert inv.kernel == "3.10.0-327.el7.x86_64"
    pkgs = _by_name(inv)
    assert pkgs["bash"] == Package("bash", "x86_64", None, "4.2.46", "19.el7", ("GPLv3+",))
    # "(none)" is rpm's way of printing an unset epoch.
    assert pkgs["openssl"].epoch == 1 and pkgs["openssl"].evr() == "1:1.0.1e-42.el7.9"
    assert pkgs["tzdata"].arch == "noarch"
    assert pkgs["glibc"].licenses == ("LGPLv2+ and LGPLv2+ with exceptions and GPLv2+",)


def test_rpm_signing_keys_are_not_packages() -> None:
    assert "gpg-pubkey" not in _by_name(_parse("rpm-centos72.txt"))


def test_dpkg_output_of_bookworm() -> None:
    inv = _parse("dpkg-bookworm.txt")
    assert (inv.format, inv.distro_id, inv.distro_version) == ("dpkg", "debian", "12")
    pkgs = _by_name(inv)
    assert pkgs["attr"].evr() == "1:2.5.1-4" and pkgs["attr"].epoch == 1
    assert (pkgs["attr"].version, pkgs["attr"].release) == ("2.5.1", "4")
    # A native package has no Debian revision; an upstream version may itself hold hyphens and colons.
    assert pkgs["adduser"].release is None and pkgs["adduser"].evr() == "3.134"
    assert pkgs["systemd"].version == "252.39" and pkgs["systemd"].release == "1~deb12u2"
    assert pkgs["adduser"].arch == "all"


def test_dpkg_keeps_installed_and_unpacked_only() -> None:
    names = set(_by_name(_parse("dpkg-bookworm.txt")))
    assert "openssh-server" in names  # iU: unpacked, its files are on disk
    assert "linux-image-6.1.0-28-cloud-amd64" in names
    assert "linux-image-6.1.0-27-cloud-amd64" not in names  # rc: only its config files are left
    assert "libpam-systemd" not in names  # un: known to dpkg, never installed


def test_dpkg_licenses_from_dep5_copyright() -> None:
    pkgs = _by_name(_parse("dpkg-bookworm.txt"))
    assert pkgs["attr"].licenses == ("GPL-2+", "LGPL-2+")
    assert pkgs["bash"].licenses[:2] == ("GPL-3+", "GPL-3+ with Bison exception")
    assert len(set(pkgs["bash"].licenses)) == len(pkgs["bash"].licenses)
    # libc6's copyright file is free text, not DEP-5: the query prints nothing for it.
    assert pkgs["libc6"].licenses == ()
    # No copyright line for it in the query's output (no DEP-5 file, or no doc at all): no license.
    assert pkgs["coreutils"].licenses == ()


def test_copyright_lines_other_than_license_are_ignored() -> None:
    lines = [
        "/usr/share/doc/foo/copyright\tLicense: MIT",
        "/usr/share/doc/foo/copyright\tLicense: MIT",
        "/usr/share/doc/foo/copyright\tLicense:",
        "/usr/share/doc/foo/changelog\tLicense: GPL-2",
        "garbage",
    ]
    assert inventory.parse_copyright(lines) == {"foo": ("MIT",)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.36-9+deb12u4", (None, "2.36", "9+deb12u4")),
        ("1:9.2p1-2+deb12u3", (1, "9.2p1", "2+deb12u3")),
        ("3.134", (None, "3.134", None)),
        ("1:2.0-rc1-3", (1, "2.0-rc1", "3")),  # the revision is after the *last* hyphen
        ("2:1.0:beta", (2, "1.0:beta", None)),  # only the first colon ends the epoch
        ("252.39-1~deb12u2", (None, "252.39", "1~deb12u2")),
    ],
)
def test_debian_version_split(text: str, expected: tuple[int | None, str, str | None]) -> None:
    assert inventory.split_debian_version(text) == expected


def test_os_release_quotes_and_comments() -> None:
    got = inventory.parse_os_release(["# comment", "ID='ol'", 'VERSION_ID="7.2"', "ID_LIKE=fedora", "junk"])
    assert got == {"ID": "ol", "VERSION_ID": "7.2", "ID_LIKE": "fedora"}


def test_no_package_database_is_a_verify_error() -> None:
    with pytest.raises(VerifyError, match="neither rpm nor dpkg"):
        inventory.parse("== os-release\nID=alpine\n== kernel\n6.1\n== none\n")


def test_empty_database_is_a_verify_error() -> None:
    with pytest.raises(VerifyError, match="lists no installed package"):
        inventory.parse("== os-release\nID=centos\n== kernel\n3.10\n== rpm\n")


def test_unreadable_rpm_line_is_a_verify_error() -> None:
    with pytest.raises(VerifyError, match="6 tab-separated fields"):
        inventory.parse("== rpm\nbash 4.2.46-19.el7 x86_64\n")


def test_unreadable_dpkg_line_is_a_verify_error() -> None:
    with pytest.raises(VerifyError, match="4 tab-separated fields"):
        inventory.parse("== dpkg\nii bash 5.2\n")


def test_the_query_script_runs_on_this_debian_host() -> None:
    """The very script verify sends, run by a real sh against this host's real dpkg database."""
    script = inventory.QUERY_SCRIPT.encode()
    proc = subprocess.run(["sh", "-s"], input=script, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    inv = inventory.parse(proc.stdout.decode())
    expected = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}\\n"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert len(inv.packages) == sum(1 for s in expected if len(s) > 1 and s[1] in "iUFWt")
    assert "dpkg" in _by_name(inv) and inv.distro_id == "debian"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    inv = _parse("dpkg-bookworm.txt")
    path = inventory.save(inv, tmp_path)
    assert path == tmp_path / inventory.INVENTORY
    assert inventory.load(tmp_path) == inv
    assert inventory.recorded(tmp_path) == inv
    assert json.loads(path.read_text())["format"] == "dpkg"


def test_load_without_inventory_is_an_input_error(tmp_path: Path) -> None:
    assert inventory.recorded(tmp_path) is None
    with pytest.raises(InputError, match="no package inventory"):
        inventory.load(tmp_path)


def test_load_of_a_corrupt_inventory_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "verify").mkdir()
    (tmp_path / inventory.INVENTORY).write_text('{"format": "rpm"')
    with pytest.raises(InputError, match="unreadable package inventory"):
        inventory.load(tmp_path)
