"""The build directory and record: atomic writes, stage bookkeeping, reopening."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.core.record import BuildDir, atomic_write_text, to_jsonable
from factory.errors import InputError


@dataclass(frozen=True)
class _Result:
    disk: Path
    seconds: float


def test_create_writes_record(tmp_path: Path) -> None:
    build = BuildDir.create(tmp_path, "testbed", "b1")
    rec = json.loads((tmp_path / "testbed" / "b1" / "record.json").read_text())
    assert rec["spec"] == "testbed"
    assert rec["build_id"] == "b1"
    assert rec["stages"] == {}
    assert build.path == tmp_path / "testbed" / "b1"


def test_create_refuses_existing_build(tmp_path: Path) -> None:
    BuildDir.create(tmp_path, "testbed", "b1")
    with pytest.raises(FileExistsError):
        BuildDir.create(tmp_path, "testbed", "b1")


def test_stage_run_records_result_and_duration(tmp_path: Path) -> None:
    build = BuildDir.create(tmp_path, "s", "b")
    with build.stage_run("install", inputs="abc") as holder:
        holder["result"] = _Result(disk=Path("/x/disk.qcow2"), seconds=1.5)
    again = BuildDir.open(build.path)
    st = again.stage("install")
    assert st is not None
    assert st["status"] == "ok"
    assert st["result"] == {"disk": "/x/disk.qcow2", "seconds": 1.5}
    assert st["duration_s"] >= 0
    assert again.stage_ok("install", inputs="abc")
    assert not again.stage_ok("install", inputs="other")


def test_stage_run_records_failure_and_reraises(tmp_path: Path) -> None:
    build = BuildDir.create(tmp_path, "s", "b")
    with pytest.raises(RuntimeError), build.stage_run("verify"):
        raise RuntimeError("sshd never answered")
    st = BuildDir.open(build.path).stage("verify")
    assert st is not None
    assert st["status"] == "failed"
    assert st["error"] == "sshd never answered"
    assert not build.stage_ok("verify")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, "not a build directory", id="no-record"),
        pytest.param("{not json", "unreadable build record", id="corrupt-record"),
    ],
)
def test_open_bad_build_dir(tmp_path: Path, content: str | None, expected: str) -> None:
    if content is not None:
        (tmp_path / "record.json").write_text(content)
    with pytest.raises(InputError, match=expected):
        BuildDir.open(tmp_path)


def test_atomic_write_leaves_no_temp_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_to_jsonable_handles_nested_values() -> None:
    assert to_jsonable({"a": (Path("/p"), [_Result(Path("/d"), 2.0)])}) == {
        "a": ["/p", [{"disk": "/d", "seconds": 2.0}]]
    }


def test_build_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stages pass these paths to programs run elsewhere (pytest runs tests/images from the repo root).
    monkeypatch.chdir(tmp_path)
    build = BuildDir.create(Path("build"), "s", "b")
    assert build.path == tmp_path / "build" / "s" / "b"
    assert BuildDir.open(Path("build/s/b")).path == build.path
