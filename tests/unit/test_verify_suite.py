"""tests/images run for real, without a VM: testinfra's local:// backend checks this machine.

The spec is written to match this host, so the wiring is what is under test: --spec drives the
parameters and skips, a wrong expectation fails its named check, and plain `pytest` leaves the suite alone.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.cli import main
from factory.errors import EXIT_VERIFY

ROOT = Path(__file__).resolve().parents[2]


def _root_fstype() -> str:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == "/":
            fstype = fields[2]
    return fstype


def _host_spec(tmp_path: Path, **expect: Any) -> Path:
    """A spec whose expectations hold on this host (a container: no sshd, no ifcfg files, no SELinux)."""
    (tmp_path / "ks.cfg").write_text("text\n")
    base: dict[str, Any] = {
        "interfaces_onboot": [],
        "kernel": "any",
        "packages_required": ["coreutils", "bash"],
        "packages_forbidden": ["no-such-package-zz"],
        "services_enabled": [],
        "services_running": [],
        "selinux": "absent",
        "serial_console": "console=ttyS0" in Path("/proc/cmdline").read_text(),
        "cloud_init": False,
        "root_password": "locked-or-hashed",
        "filesystems": [{"mount": "/", "fstype": _root_fstype(), "min_size_gib": 0.01}],
        "skip": [
            {"rule": "ssh_service", "reason": "the test host runs no sshd"},
            {"rule": "root_password", "reason": "the test host's root password is not ours to judge"},
            {"rule": "no_private_keys", "reason": "a developer machine may hold keys"},
        ],
    }
    base.update(expect)
    spec = {
        "name": "localhost",
        "os": "testbed",
        "media": {"builtin": "testbed", "volume_label": "T"},
        "kickstart": {"path": "ks.cfg"},
        "expect": base,
    }
    path = tmp_path / "localhost.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def _outcomes(junit: Path) -> dict[str, str]:
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        result[case.get("name", "")] = kinds[0] if kinds else "passed"
    return result


def _run_suite(tmp_path: Path, spec: Path) -> tuple[int, dict[str, str], str]:
    junit = tmp_path / "junit.xml"
    proc = _pytest("tests/images", f"--spec={spec}", "--hosts=local://", f"--junitxml={junit}", "-rs")
    return proc.returncode, _outcomes(junit), proc.stdout


def test_suite_passes_on_a_host_matching_the_spec(tmp_path: Path) -> None:
    code, outcomes, stdout = _run_suite(tmp_path, _host_spec(tmp_path))
    assert code == 0, stdout
    assert outcomes["test_packages_required[coreutils-local]"] == "passed"
    assert outcomes["test_packages_forbidden[no-such-package-zz-local]"] == "passed"
    assert outcomes["test_filesystems[/-local]"] == "passed"
    assert outcomes["test_ssh_service[local]"] == "skipped"
    assert "skipped by localhost.yaml: the test host runs no sshd" in stdout


@pytest.mark.parametrize(
    ("expect", "failing"),
    [
        pytest.param(
            {"packages_required": ["no-such-package-zz"]},
            "test_packages_required[no-such-package-zz-local]",
            id="missing-package",
        ),
        pytest.param(
            {"packages_forbidden": ["coreutils"]}, "test_packages_forbidden[coreutils-local]", id="forbidden"
        ),
        pytest.param(
            {"filesystems": [{"mount": "/", "fstype": "no-such-fs"}]},
            "test_filesystems[/-local]",
            id="wrong-fstype",
        ),
        pytest.param(
            {"filesystems": [{"mount": "/", "fstype": _root_fstype(), "min_size_gib": 1_000_000}]},
            "test_filesystems[/-local]",
            id="filesystem-too-small",
        ),
        pytest.param({"interfaces_onboot": ["eth9"]}, "test_interfaces_onboot[eth9-local]", id="no-ifcfg"),
    ],
)
def test_suite_fails_the_check_that_does_not_hold(
    tmp_path: Path, expect: dict[str, Any], failing: str
) -> None:
    code, outcomes, stdout = _run_suite(tmp_path, _host_spec(tmp_path, **expect))
    assert code == 1, stdout
    assert outcomes[failing] == "failure"
    assert [name for name, kind in outcomes.items() if kind == "failure"] == [failing]


def test_unknown_skip_fails_before_anything_boots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _host_spec(tmp_path, skip=[{"rule": "no_such_check", "reason": "typo"}])
    assert main(["verify", str(spec), "--build", str(tmp_path / "no-build")]) == EXIT_VERIFY
    assert "unknown check(s) no_such_check" in capsys.readouterr().err


def test_plain_pytest_does_not_collect_the_suite() -> None:
    proc = _pytest("--collect-only", "-q", "tests/images")
    assert "tests/images/" not in proc.stdout


def test_the_suite_is_collected_with_a_spec(tmp_path: Path) -> None:
    proc = _pytest("--collect-only", "-q", "tests/images", f"--spec={_host_spec(tmp_path)}")
    assert "tests/images/test_access.py::test_root_password" in proc.stdout
