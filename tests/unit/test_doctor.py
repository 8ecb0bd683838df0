"""`factory doctor` on this host and on hosts with tools taken away (a PATH with only some of them)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from el7iso import make_el7_iso

import factory.vm
from factory import cli, doctor
from factory.core import digest
from factory.host import capabilities
from factory.stages.media import media


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


# Programs the probes use besides the tools under test (apt fetches the appliance kernel once).
BASE = ["apt-get", "apt-cache", "dpkg-deb", "depmod", "sh", "env"]
REQUIRED = [
    "qemu-system-x86_64", "qemu-img", "xorriso", "ssh", "ssh-keygen", "mkfs.ext4", "debugfs", "depmod",
    "bmaptool",
]  # fmt: skip


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unpacked appliance kernel for every test (each test has its own empty cache otherwise)."""
    from factory.host import supermin

    root = tmp_path_factory.mktemp("kernel-cache")
    supermin.appliance_kernel(root)
    return root / "appliance-kernel"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_cache: Path) -> Path:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "appliance-kernel").symlink_to(kernel_cache)
    return tmp_path / "cache"


def test_ready_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = doctor_json(capsys)
    assert (code, report["ok"], report["missing_required"], report["failed"]) == (0, True, [], [])
    tools = {t["name"]: t for t in report["tools"]}
    assert tools["qemu-img"]["version"].startswith("qemu-img version ")
    assert tools["xorriso"]["version"].startswith("xorriso ")
    assert tools["ssh"]["version"].startswith("OpenSSH_")  # ssh -V answers on stderr
    assert report["qemu_version"].startswith("QEMU emulator version ")
    assert report["qemu_path"] == shutil.which("qemu-system-x86_64")
    assert report["accel"]["kvm_device"] == Path("/dev/kvm").exists()
    assert report["accel"]["auto_uses"] in ("kvm", "tcg")
    caps = {c["name"]: c for c in report["capabilities"]}
    assert set(caps) == {c.name for c in capabilities.CAPABILITIES}
    assert "under TCG" in caps["qemu"]["detail"]
    assert "libguestfs (appliance booted) read a file" in caps["libguestfs"]["detail"]
    assert "debugfs read a file" in caps["ext4"]["detail"]


@pytest.mark.parametrize(
    ("present", "missing_required", "code"),
    [
        pytest.param(REQUIRED, [], 3, id="only-required-present"),
        pytest.param(
            [t for t in REQUIRED if t != "qemu-system-x86_64"], ["qemu-system-x86_64"], 3, id="no-qemu"
        ),
        pytest.param([t for t in REQUIRED if t != "xorriso"], ["xorriso"], 3, id="no-xorriso"),
        pytest.param([t for t in REQUIRED if t != "debugfs"], ["debugfs"], 3, id="no-debugfs"),
        pytest.param([], [t for t in REQUIRED if t not in BASE], 3, id="nothing"),
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
    monkeypatch.setenv("PATH", path_with(tmp_path, list(dict.fromkeys([*BASE, *present]))))
    got, report = doctor_json(capsys)
    assert (got, report["missing_required"]) == (code, missing_required)
    tools = {t["name"]: t for t in report["tools"]}
    caps = {c["name"]: c for c in report["capabilities"]}
    # The testbed's tools are absent in every case: not ready, whatever else is there.
    assert tools["mmdebstrap"]["version"] == "missing"
    assert not caps["mmdebstrap"]["ok"]
    assert "apt-get install -y mmdebstrap" in caps["mmdebstrap"]["fix"]
    for name in missing_required:
        assert tools[name]["path"] is None
        assert tools[name]["version"] == "missing"
    if "qemu-system-x86_64" in missing_required:
        assert (tools["qemu-system-x86_64"]["deb"], tools["qemu-system-x86_64"]["rpm"]) == (
            "qemu-system-x86",
            "qemu-system-x86-core",
        )
        assert not caps["qemu"]["ok"]
    if "debugfs" in missing_required:
        assert not caps["ext4"]["ok"]
        assert "e2fsprogs" in caps["ext4"]["fix"]


def test_human_output_names_install_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "PATH", path_with(tmp_path, list(dict.fromkeys([*BASE, *(t for t in REQUIRED if t != "xorriso")])))
    )
    code, out = run_doctor(capsys)
    assert code == 3
    assert "MISSING  xorriso" in out
    assert "FAILED   xorriso makes a bootable ISO (required)" in out
    assert "apt-get install -y xorriso" in out
    assert "dnf install -y xorriso" in out
    assert out.rstrip().splitlines()[-1].startswith("not ready: xorriso")


def _fake(bin_dir: Path, name: str, script: str) -> None:
    (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / name).chmod(0o755)


def test_no_kernel_to_fetch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Path
) -> None:
    """A host that cannot fetch a kernel (apt has none) and has none in /boot: QEMU's and libguestfs's
    probes fail with the reason, and the host is not ready, although every program is installed."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    _fake(fakes, "apt-cache", "echo 'E: No packages found' >&2; exit 100")
    (cache / "appliance-kernel").unlink()
    monkeypatch.setenv("PATH", f"{fakes}:{os.environ['PATH']}")
    code, report = doctor_json(capsys)
    caps = {c["name"]: c for c in report["capabilities"]}
    assert code == 3
    assert report["missing_required"] == []
    # mmdebstrap asks apt too: a host whose apt has no packages cannot bootstrap the testbed either.
    assert set(report["failed"]) == {"qemu", "mmdebstrap"}
    assert "No packages found" in caps["qemu"]["detail"]
    assert not caps["libguestfs"]["ok"]
    assert "No packages found" in caps["libguestfs"]["detail"]


def test_a_tool_that_runs_but_does_not_work(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Present is not proven: an xorriso that exits 0 without writing an ISO fails its probe."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    _fake(fakes, "xorriso", "exit 0")
    monkeypatch.setenv("PATH", f"{fakes}:{os.environ['PATH']}")
    code, report = doctor_json(capsys)
    caps = {c["name"]: c for c in report["capabilities"]}
    assert (code, report["failed"]) == (3, ["iso"])
    assert caps["iso"]["detail"]


@pytest.mark.parametrize(
    ("files", "readable", "expected"),
    [
        pytest.param(
            {"boot/vmlinuz-6.1.0-1-amd64": True, "modules/6.1.0-1-amd64/": True}, True, True, id="kernel"
        ),
        pytest.param({}, True, False, id="empty-boot"),
        pytest.param({"boot/vmlinuz-6.1.0-1-amd64": True}, True, False, id="no-modules"),
        pytest.param(
            {"boot/vmlinuz-6.1.0-1-amd64": True, "modules/6.1.0-1-amd64/": True}, False, False, id="root-only"
        ),
    ],
)
def test_host_kernel_readable(tmp_path: Path, files: dict[str, bool], readable: bool, expected: bool) -> None:
    from factory.host import supermin

    (tmp_path / "boot").mkdir()
    (tmp_path / "modules").mkdir()
    for rel in files:
        target = tmp_path / rel
        if rel.endswith("/"):
            target.mkdir(parents=True)
        else:
            target.write_bytes(b"kernel")
            # Ubuntu's /boot/vmlinuz-* is 0600 root: unreadable for the build user.
            target.chmod(0o644 if readable else 0o000)
    if not readable and os.geteuid() == 0:
        pytest.skip("root reads any file: the root-only case needs a non-root user")
    assert supermin.host_kernel_readable(tmp_path / "boot", tmp_path / "modules") is expected


def test_probe_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Import fails as if the module did not exist.
    monkeypatch.setitem(sys.modules, "factory.vm.accel", None)
    monkeypatch.delattr(factory.vm, "accel", raising=False)
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
