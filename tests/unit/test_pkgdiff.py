"""Version order (rpm's rpmvercmp, dpkg's) and the package diff between two builds' inventories."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from factory.core.record import BuildDir
from factory.errors import InputError
from factory.stages.verify import inventory, pkgdiff
from factory.stages.verify.inventory import Inventory, Package

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"


# rpm's order: alphanumeric runs compared in turn, separators only split them, digits beat letters.
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0),
        ("2.0", "2.0.1", -1),
        ("2.0.1a", "2.0.1", 1),
        ("5.5p1", "5.5p10", -1),  # digit runs compare as numbers
        ("10.0001", "10.1", 0),  # leading zeros do not count
        ("10.0001", "10.0039", -1),
        ("xyz.4", "8", -1),  # a digit run beats a letter run
        ("6.0.rc1", "6.0", 1),  # a longer version wins when it is not a tilde
        ("10b2", "10a1", 1),
        ("2_0", "2.0", 0),  # any non-alphanumeric is just a separator
        ("+", "_", 0),
        ("1.0~rc1", "1.0", -1),  # tilde sorts before the end of the string
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0^", "1.0", 1),  # caret sorts after the end of the string...
        ("1.0^git1", "1.01", -1),  # ...but before any further segment
        ("1.0^git1", "1.0^git1~pre", 1),
        ("1.0~rc1^git1", "1.0~rc1", 1),
        ("1b.fc17", "1.fc17", -1),  # rpm's own documented oddity, kept as rpm has it
        ("1.1.\u03b1", "1.1.\u03b2", 0),  # non-ASCII characters are separators to rpm
        ("3.10.0", "3.10.0", 0),
        ("327.el7", "514.el7", -1),
        ("42.el7.9", "51.el7_2.4", -1),  # the real openssl update of CentOS 7.2
        ("el7.9", "el7_2.4", 1),  # "_" is a separator: 9 > 2
    ],
)
def test_rpmvercmp(a: str, b: str, expected: int) -> None:
    assert pkgdiff.rpmvercmp(a, b) == expected
    assert pkgdiff.rpmvercmp(b, a) == -expected


def _rpm(evr: str, name: str = "p") -> Package:
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.partition("-")
    return Package(name, "x86_64", int(epoch) if epoch else None, version, release)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1:1.0-1", "2.0-1", 1),  # the epoch decides first
        ("0:1.0-1", "1.0-1", 0),  # no epoch is epoch 0
        ("1.0-2.el7", "1.0-10.el7", -1),  # then the release, numerically
        ("1.0.1-1", "1.0-9", 1),  # the version before the release
    ],
)
def test_rpm_evr_order(a: str, b: str, expected: int) -> None:
    assert pkgdiff.compare_rpm(_rpm(a), _rpm(b)) == expected


def _deb(evr: str, name: str = "p") -> Package:
    epoch, upstream, revision = inventory.split_debian_version(evr)
    return Package(name, "amd64", epoch, upstream, revision)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0~rc1-1", "1.0-1", -1),  # tilde before anything, also the end
        ("1.0-1~bpo12+1", "1.0-1", -1),  # backports sort below the release they came from
        ("1:0.1-1", "9.9-1", 1),  # epoch first
        ("2.36-9+deb12u4", "2.36-9+deb12u10", -1),  # digit runs as numbers in the revision too
        ("1.0a-1", "1.0-1", 1),  # letters after the end of the other: later
        ("1.0+b1", "1.0", 1),  # a binNMU of a native package
        ("1.0-1", "1.0-1", 0),
        ("252.39-1~deb12u2", "252.39-1", -1),
    ],
)
def test_dpkg_order(a: str, b: str, expected: int) -> None:
    assert pkgdiff.compare_dpkg(_deb(a), _deb(b)) == expected
    assert pkgdiff.compare_dpkg(_deb(b), _deb(a)) == -expected


def _inv(fmt: str, kernel: str, *packages: Package) -> Inventory:
    return Inventory(fmt, "centos" if fmt == "rpm" else "debian", "7", kernel, tuple(sorted(packages)))


def test_diff_sorts_every_kind_of_change() -> None:
    before = _inv(
        "rpm",
        "3.10.0-327.el7.x86_64",
        _rpm("4.2.46-19.el7", "bash"),
        _rpm("1:1.0.1e-42.el7.9", "openssl"),
        _rpm("1.0-1", "gone"),
        _rpm("2.0-1", "same"),
        _rpm("3.0-1", "older"),
    )
    after = _inv(
        "rpm",
        "3.10.0-327.el7.x86_64",
        _rpm("4.2.46-20.el7_2", "bash"),
        _rpm("1:1.0.1e-51.el7_2.4", "openssl"),
        _rpm("2.0-1", "same"),
        _rpm("2.9-1", "older"),
        _rpm("0.1-1", "new"),
    )
    diff = pkgdiff.diff_inventories(before, after, before_label="A", after_label="B")
    assert [c.name for c in diff.upgraded] == ["bash", "openssl"]
    assert diff.upgraded[1] == pkgdiff.Change("openssl", "x86_64", "1:1.0.1e-42.el7.9", "1:1.0.1e-51.el7_2.4")
    assert diff.downgraded == (pkgdiff.Change("older", "x86_64", "3.0-1", "2.9-1"),)
    assert diff.added == (pkgdiff.Entry("new", "x86_64", "0.1-1"),)
    assert diff.removed == (pkgdiff.Entry("gone", "x86_64", "1.0-1"),)
    assert diff.unchanged == 1 and diff.packages == 5
    assert diff.kernel is None and diff.changed()


def test_no_change() -> None:
    inv = inventory.parse((DATA / "rpm-centos72.txt").read_text())
    diff = pkgdiff.diff_inventories(inv, inv)
    assert not diff.changed() and diff.unchanged == len(inv.packages)


def test_install_only_kernels_and_the_kernel_change() -> None:
    """rpm keeps several kernels installed: the new one is added, the running kernel changes."""
    before = _inv("rpm", "3.10.0-327.el7.x86_64", _rpm("3.10.0-327.el7", "kernel"))
    after = _inv(
        "rpm", "3.10.0-514.el7.x86_64", _rpm("3.10.0-327.el7", "kernel"), _rpm("3.10.0-514.el7", "kernel")
    )
    diff = pkgdiff.diff_inventories(before, after)
    assert diff.added == (pkgdiff.Entry("kernel", "x86_64", "3.10.0-514.el7"),)
    assert not diff.upgraded and diff.unchanged == 1
    assert diff.kernel == pkgdiff.KernelChange("3.10.0-327.el7.x86_64", "3.10.0-514.el7.x86_64", ("kernel",))
    assert "kernel 3.10.0-327.el7.x86_64 -> 3.10.0-514.el7.x86_64" in pkgdiff.summary(diff)


def test_debian_kernel_abi_change_is_called_out() -> None:
    """Debian puts the kernel ABI in the package name: the old image package goes, a new one comes."""
    before = _inv("dpkg", "6.1.0-27-cloud-amd64", _deb("6.1.115-1", "linux-image-6.1.0-27-cloud-amd64"))
    after = _inv("dpkg", "6.1.0-28-cloud-amd64", _deb("6.1.119-1", "linux-image-6.1.0-28-cloud-amd64"))
    diff = pkgdiff.diff_inventories(before, after)
    assert diff.kernel is not None
    assert diff.kernel.packages == ("linux-image-6.1.0-27-cloud-amd64", "linux-image-6.1.0-28-cloud-amd64")
    assert (diff.kernel.before, diff.kernel.after) == ("6.1.0-27-cloud-amd64", "6.1.0-28-cloud-amd64")


def test_kernel_package_change_without_a_new_running_kernel() -> None:
    before = _inv("rpm", "3.10.0-327.el7.x86_64", _rpm("3.10.0-327.el7", "kernel"))
    after = _inv(
        "rpm", "3.10.0-327.el7.x86_64", _rpm("3.10.0-327.el7", "kernel"), _rpm("2.0-1", "kernel-uek")
    )
    diff = pkgdiff.diff_inventories(before, after)
    assert diff.kernel is not None and diff.kernel.packages == ("kernel-uek",)
    assert "(packages kernel-uek changed)" in pkgdiff.summary(diff)


def test_an_arch_change_is_a_removal_and_an_addition() -> None:
    before = _inv("rpm", "k", Package("glibc", "i686", None, "2.17", "105.el7"))
    after = _inv("rpm", "k", Package("glibc", "x86_64", None, "2.17", "105.el7"))
    diff = pkgdiff.diff_inventories(before, after)
    assert [e.arch for e in diff.removed] == ["i686"] and [e.arch for e in diff.added] == ["x86_64"]


def test_two_package_formats_are_refused() -> None:
    with pytest.raises(InputError, match="no common order"):
        pkgdiff.diff_inventories(_inv("rpm", "k", _rpm("1-1")), _inv("dpkg", "k", _deb("1-1")))


def test_render_lists_each_change() -> None:
    before = _inv("rpm", "k1", _rpm("1-1", "a"), _rpm("1-1", "gone"))
    after = _inv("rpm", "k2", _rpm("2-1", "a"), _rpm("1-1", "new"))
    lines = pkgdiff.render(pkgdiff.diff_inventories(before, after, before_label="A", after_label="B"))
    assert lines[0] == "packages (rpm): A -> B"
    assert "1 upgraded, 0 downgraded, 1 added, 1 removed, 0 unchanged" in lines
    assert "kernel: k1 -> k2" in lines
    assert "  a.x86_64  1-1 -> 2-1" in lines
    assert "  new.x86_64  1-1" in lines and "  gone.x86_64  1-1" in lines


def test_json_round_trip() -> None:
    from factory.core.record import from_jsonable, to_jsonable

    before = _inv("rpm", "k1", _rpm("1-1", "kernel"), _rpm("1-1", "gone"))
    after = _inv("rpm", "k2", _rpm("2-1", "kernel"))
    diff = pkgdiff.diff_inventories(before, after)
    assert from_jsonable(pkgdiff.PackageDiff, to_jsonable(diff)) == diff


# ---------------------------------------------------------------- builds on disk


def _build(root: Path, spec: str, build_id: str, inv: Inventory | None, *, verified: bool = True) -> BuildDir:
    build = BuildDir.create(root, spec, build_id)
    if inv is not None:
        inventory.save(inv, build.path)
    build.record_stage("verify", "ok" if verified else "failed", result={"passed": verified})
    return build


def test_previous_verified_is_the_newest_older_verified_build(tmp_path: Path) -> None:
    inv = _inv("rpm", "k", _rpm("1-1", "a"))
    _build(tmp_path, "c7", "20260101T000000Z-0001", inv)
    good = _build(tmp_path, "c7", "20260102T000000Z-0001", inv)
    _build(tmp_path, "c7", "20260103T000000Z-0001", inv, verified=False)
    _build(tmp_path, "c7", "20260103T000000Z-0002", None)  # verified before inventories were recorded
    current = _build(tmp_path, "c7", "20260104T000000Z-0001", inv)
    _build(tmp_path, "c7", "20260105T000000Z-0001", inv)  # newer than the build asked about
    _build(tmp_path, "other", "20260103T000000Z-0003", inv)
    previous = pkgdiff.previous_verified(current.path)
    assert previous is not None and previous.path == good.path


def test_first_build_has_no_previous(tmp_path: Path) -> None:
    current = _build(tmp_path, "c7", "20260104T000000Z-0001", _inv("rpm", "k", _rpm("1-1")))
    assert pkgdiff.previous_verified(current.path) is None
    assert pkgdiff.against_previous(current) is None


def test_a_corrupt_previous_inventory_does_not_fail_the_build(tmp_path: Path) -> None:
    old = _build(tmp_path, "c7", "20260101T000000Z-0001", _inv("rpm", "k", _rpm("1-1")))
    (old.path / inventory.INVENTORY).write_text("{")
    current = _build(tmp_path, "c7", "20260104T000000Z-0001", _inv("rpm", "k", _rpm("1-1")))
    assert pkgdiff.against_previous(current) is None


def test_against_previous_and_the_recorded_summary_line(tmp_path: Path) -> None:
    _build(tmp_path, "c7", "20260101T000000Z-0001", _inv("rpm", "k1", _rpm("1-1", "a")))
    after = _inv("rpm", "k2", _rpm("2-1", "a"), _rpm("1-1", "b"))
    current = _build(tmp_path, "c7", "20260104T000000Z-0001", after)
    diff = pkgdiff.against_previous(current)
    assert diff is not None and diff.before == "20260101T000000Z-0001"
    current.record_stage("verify", "ok", result={"packages": 2, "package_diff": diff})
    line = pkgdiff.recorded_line(current.path)
    assert line == (
        "2 packages; since 20260101T000000Z-0001: 1 upgraded, 0 downgraded, 1 added, 0 removed; "
        "kernel k1 -> k2"
    )
    current.record_stage("verify", "ok", result={"packages": 2, "package_diff": None})
    assert "no earlier verified build" in (pkgdiff.recorded_line(current.path) or "")


def test_diff_builds_of_two_specs_carries_a_note(tmp_path: Path) -> None:
    a = _build(tmp_path, "centos72", "20260101T000000Z-0001", _inv("rpm", "k", _rpm("1-1")))
    b = _build(tmp_path, "ol72", "20260101T000000Z-0002", _inv("rpm", "k", _rpm("1-2")))
    diff = pkgdiff.diff_builds(a, b)
    assert diff.notes == ("the builds are of two specs: centos72 and ol72",)
    assert dataclasses.replace(diff, notes=()) == pkgdiff.diff_inventories(
        inventory.load(a.path), inventory.load(b.path), before_label=a.build_id, after_label=b.build_id
    )


def test_build_summary_prints_the_recorded_line(tmp_path: Path) -> None:
    from factory.commands.build import package_lines
    from factory.pipeline import Outcome

    _build(tmp_path, "c7", "20260101T000000Z-0001", _inv("rpm", "k", _rpm("1-1", "a")))
    current = _build(tmp_path, "c7", "20260104T000000Z-0001", _inv("rpm", "k", _rpm("1-2", "a")))
    current.record_stage(
        "verify", "ok", result={"packages": 1, "package_diff": pkgdiff.against_previous(current)}
    )
    outcomes = [Outcome(spec="c7", build_dir=current.path), Outcome(spec="never-built")]
    assert package_lines(outcomes) == [
        "packages: c7: 1 packages; since 20260101T000000Z-0001: 1 upgraded, 0 downgraded, 0 added, 0 removed"
    ]


def test_the_verify_result_with_its_diff_round_trips_through_the_record() -> None:
    from factory.core.record import from_jsonable, to_jsonable
    from factory.stages.verify.verify import Summary, VerifyResult

    diff = pkgdiff.diff_inventories(
        _inv("rpm", "k1", _rpm("1-1", "kernel"), _rpm("1-1", "gone")),
        _inv("rpm", "k2", _rpm("2-1", "kernel")),
    )
    result = VerifyResult(
        passed=True,
        image_sha256="0" * 64,
        junit=Path("/b/verify/junit.xml"),
        summary=Summary(1, 0, 0, 0),
        ssh_ready_s=1.0,
        suite_s=2.0,
        transcript=Path("/b/verify/console.log"),
        inventory=Path("/b/verify/inventory.json"),
        packages=1,
        inventory_s=0.5,
        package_diff=diff,
    )
    assert from_jsonable(VerifyResult, to_jsonable(result)) == result
