"""`factory diff BUILD_A BUILD_B`: the text and JSON output, and each bad input with its exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.cli import main
from factory.core.record import BuildDir
from factory.errors import EXIT_OK, EXIT_USAGE
from factory.stages.verify import inventory
from factory.stages.verify.inventory import Inventory, Package

DATA = Path(__file__).resolve().parents[1] / "data" / "inventory"


def _build(root: Path, spec: str, build_id: str, inv: Inventory | None) -> Path:
    build = BuildDir.create(root, spec, build_id)
    if inv is not None:
        inventory.save(inv, build.path)
    build.record_stage("verify", "ok", result={"passed": True})
    return build.path


@pytest.fixture
def centos(tmp_path: Path) -> tuple[Path, Path]:
    """Two builds of one spec: the CentOS 7.2 inventory, then one with a bash update and a new kernel."""
    before = inventory.parse((DATA / "rpm-centos72.txt").read_text())
    changed = [
        Package("bash", "x86_64", None, "4.2.46", "20.el7_2", ("GPLv3+",)) if p.name == "bash" else p
        for p in before.packages
        if p.name != "tzdata"
    ]
    changed.append(Package("kernel", "x86_64", None, "3.10.0", "327.4.5.el7", ("GPLv2",)))
    after = Inventory("rpm", "centos", "7", "3.10.0-327.4.5.el7.x86_64", tuple(sorted(changed)))
    return (
        _build(tmp_path, "centos72", "20260901T000000Z-0001", before),
        _build(tmp_path, "centos72", "20261201T000000Z-0001", after),
    )


def test_diff_prints_the_changes(centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(centos[0]), str(centos[1])]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "packages (rpm): 20260901T000000Z-0001 -> 20261201T000000Z-0001"
    assert "1 upgraded, 0 downgraded, 1 added, 1 removed, 9 unchanged" in out
    assert "kernel: 3.10.0-327.el7.x86_64 -> 3.10.0-327.4.5.el7.x86_64 (kernel)" in out
    assert "  bash.x86_64  4.2.46-19.el7 -> 4.2.46-20.el7_2" in out
    assert "  kernel.x86_64  3.10.0-327.4.5.el7" in out
    assert "  tzdata.noarch  2015g-1.el7" in out


def test_diff_json(centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(centos[0]), str(centos[1]), "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["upgraded"] == [
        {"name": "bash", "arch": "x86_64", "before": "4.2.46-19.el7", "after": "4.2.46-20.el7_2"}
    ]
    assert doc["removed"] == [{"name": "tzdata", "arch": "noarch", "evr": "2015g-1.el7"}]
    assert doc["kernel"]["after"] == "3.10.0-327.4.5.el7.x86_64"
    assert doc["notes"] == []


def test_reversed_diff_is_a_downgrade(centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(centos[1]), str(centos[0]), "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in doc["downgraded"]] == ["bash"] and not doc["upgraded"]


def test_not_a_build_directory(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["diff", str(tmp_path / "empty"), str(centos[1])]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not a build directory (no record.json)" in err and "Traceback" not in err


def test_missing_path(tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(centos[0]), str(tmp_path / "nope")]) == EXIT_USAGE
    assert "not a build directory" in capsys.readouterr().err


def test_a_file_instead_of_a_build(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["diff", str(tmp_path / "file"), str(centos[1])]) == EXIT_USAGE
    assert "unreadable build record" in capsys.readouterr().err


def test_build_without_inventory(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old = _build(tmp_path, "centos72", "20250101T000000Z-0001", None)
    assert main(["diff", str(old), str(centos[1])]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no package inventory" in err and "run `factory verify` on it" in err


def test_corrupt_inventory(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (centos[0] / inventory.INVENTORY).write_text('{"format": ')
    assert main(["diff", str(centos[0]), str(centos[1])]) == EXIT_USAGE
    assert "unreadable package inventory" in capsys.readouterr().err


def test_two_specs_are_compared_with_a_note(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ol = inventory.parse((DATA / "rpm-centos72.txt").read_text())
    other = _build(tmp_path, "ol72", "20261201T000000Z-0002", ol)
    assert main(["diff", str(centos[1]), str(other)]) == EXIT_OK
    assert "note: the builds are of two specs: centos72 and ol72" in capsys.readouterr().out


def test_two_package_formats_are_refused(
    tmp_path: Path, centos: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    deb = _build(
        tmp_path,
        "testbed",
        "20261201T000000Z-0003",
        inventory.parse((DATA / "dpkg-bookworm.txt").read_text()),
    )
    assert main(["diff", str(centos[1]), str(deb)]) == EXIT_USAGE
    assert "no common order" in capsys.readouterr().err


def test_missing_argument_is_a_usage_error(centos: tuple[Path, Path]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["diff", str(centos[0])])
    assert exc.value.code == EXIT_USAGE
