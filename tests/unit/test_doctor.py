"""`factory doctor` on this host and on hosts with tools taken away (a PATH with only some of them)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from el7iso import make_el7_iso

import factory
from factory import cli, digest, doctor, media


def run_doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["doctor", *args])
    return code, capsys.readouterr().out


def doctor_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out = run_doctor(capsys, "--json")
    return code, json.loads(out)


def path_with(tmp_path: Path, programs: list[str]) -> str:
    """A PATH holding only `programs` (symlinks to the host's)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in programs:
        found = shutil.which(name)
        assert found is not None, f"this test needs {name} on the host"
        (bin_dir / name).symlink_to(found)
    return str(bin_dir)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_ready_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = doctor_json(capsys)
    assert (code, report["ok"], report["missing_required"]) == (0, True, [])
    tools = {t["name"]: t for t in report["tools"]}
    assert tools["qemu-img"]["version"].startswith("qemu-img version ")
    assert tools["xorriso"]["version"].startswith("xorriso ")
    assert tools["ssh"]["version"].startswith("OpenSSH_")  # ssh -V answers on stderr
    assert report["qemu_version"].startswith("QEMU emulator version ")
    assert report["qemu_path"] == shutil.which("qemu-system-x86_64")
    assert report["accel"]["kvm_device"] == Path("/dev/kvm").exists()
    assert report["accel"]["auto_uses"] in ("kvm", "tcg")


@pytest.mark.parametrize(
    ("present", "missing_required", "code"),
    [
        pytest.param(
            ["qemu-system-x86_64", "qemu-img", "xorriso", "ssh", "ssh-keygen", "guestfish"],
            [],
            0,
            id="only-required-present",
        ),
        pytest.param(
            ["qemu-img", "xorriso", "ssh", "ssh-keygen", "guestfish"],
            ["qemu-system-x86_64"],
            3,
            id="no-qemu-system",
        ),
        pytest.param(
            ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "guestfish"],
            ["xorriso"],
            3,
            id="no-xorriso",
        ),
        pytest.param(
            [],
            ["qemu-system-x86_64", "qemu-img", "xorriso", "ssh", "ssh-keygen", "guestfish"],
            3,
            id="nothing",
        ),
    ],
)
def test_missing_tools(  # noqa: PLR0917 (pytest passes fixtures and parameters positionally)
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    present: list[str],
    missing_required: list[str],
    code: int,
) -> None:
    monkeypatch.setenv("PATH", path_with(tmp_path, present))
    got, report = doctor_json(capsys)
    assert (got, report["missing_required"]) == (code, missing_required)
    tools = {t["name"]: t for t in report["tools"]}
    assert tools["mmdebstrap"]["version"] == "missing"  # optional: reported, never fatal
    for name in missing_required:
        assert tools[name]["path"] is None
        assert tools[name]["version"] == "missing"
    if "qemu-system-x86_64" in missing_required:
        assert (tools["qemu-system-x86_64"]["deb"], tools["qemu-system-x86_64"]["rpm"]) == (
            "qemu-system-x86",
            "qemu-system-x86-core",
        )


def test_human_output_names_install_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "PATH", path_with(tmp_path, ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "guestfish"])
    )
    code, out = run_doctor(capsys)
    assert code == 3
    assert "MISSING  xorriso" in out
    assert "apt-get install -y xorriso mtools bmap-tools mmdebstrap cpio e2fsprogs" in out
    assert "dnf install -y xorriso mtools bmap-tools mmdebstrap cpio e2fsprogs" in out
    assert out.rstrip().endswith("not ready: missing xorriso")


def test_probe_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Import fails as if the module did not exist.
    monkeypatch.setitem(sys.modules, "factory.accel", None)
    monkeypatch.delattr(factory, "accel", raising=False)
    status = doctor.accel_status()
    assert status.probe_verdict == "probe unavailable"


def test_cache_lists_verified_isos(tmp_path: Path, cache: Path) -> None:
    iso = make_el7_iso(tmp_path)
    sha = digest.sha256_file(iso)
    media.verify_local(iso, sha)  # records the local ISO's hash
    (cache / "iso" / f"{sha}.iso").write_bytes(iso.read_bytes())  # what a finished download looks like
    status = doctor.cache_status()
    assert status.path == cache
    assert [(i.path.name, i.sha256, i.size) for i in status.isos] == [(f"{sha}.iso", sha, iso.stat().st_size)]
    assert [(k.split("|")[0], v) for k, v in status.verified_local] == [(str(iso.resolve()), sha)]
    assert status.size >= iso.stat().st_size
