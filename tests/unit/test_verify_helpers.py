"""verify's pure parts: ssh_config, boot-failure markers, JUnit counts, the suite's command line."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from factory.errors import VerifyError
from factory.spec import Spec
from factory.stages.verify import verify
from factory.vm import guest
from factory.vm.sshkey import BuildKey

KEY = BuildKey(private=Path("/b/build-key"), public="ssh-ed25519 AAAA image-factory-build-key")


def test_ssh_config_logs_in_with_the_build_key_only() -> None:
    text = guest.ssh_config_text(KEY, 40022, Path("/tmp/x/ssh-%C"))
    lines = [ln.strip() for ln in text.splitlines()]
    for wanted in (
        "Port 40022",
        "User root",
        "IdentityFile /b/build-key",
        "IdentitiesOnly yes",
        "StrictHostKeyChecking no",
        "UserKnownHostsFile /dev/null",
        "LogLevel ERROR",
        "ControlPath /tmp/x/ssh-%C",
    ):
        assert wanted in lines


def test_ssh_config_is_private_and_parsed_by_ssh(tmp_path: Path) -> None:
    path = guest.write_ssh_config(tmp_path / "ssh_config", KEY, 40022)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # `ssh -G` prints the effective configuration: proves OpenSSH reads the file as meant.
    out = subprocess.run(
        ["ssh", "-G", "-F", path, "127.0.0.1"], capture_output=True, text=True, check=True
    ).stdout
    assert "port 40022" in out
    assert "identitiesonly yes" in out


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param(
            "No bootable device.  Retrying in 0 seconds.", "no bootable disk", id="seabios-no-device"
        ),
        pytest.param("Boot failed: not a bootable disk", "no bootable disk", id="seabios-not-bootable"),
        pytest.param(
            "[ 2.1] Kernel panic - not syncing: VFS: Unable to mount root", "kernel panic", id="panic"
        ),
        pytest.param(
            "You are in emergency mode. After logging in", "emergency shell", id="systemd-emergency"
        ),
        pytest.param("Give root password for maintenance\r\n", "emergency shell", id="sulogin"),
        pytest.param("\r\ndracut:/# ", "emergency shell", id="dracut-shell"),
        pytest.param("testbed login: ", None, id="login-prompt"),
        pytest.param("Starting OpenBSD Secure Shell server: sshd.", None, id="normal-boot"),
    ],
)
def test_boot_failure(text: str, kind: str | None) -> None:
    assert guest.boot_failure("boot noise\r\n" + text) == kind


def test_login_prompt_is_recognised() -> None:
    assert guest.LOGIN_PROMPT_RE.search("Debian GNU/Linux 12 testbed ttyS0\r\r\n\r\ntestbed login: ")
    assert not guest.LOGIN_PROMPT_RE.search("Last login: Wed Nov 25 on ttyS0")


def _junit(tmp_path: Path, tests: str) -> Path:
    """A real JUnit file: pytest run on a tiny module with the given outcomes."""
    (tmp_path / "test_x.py").write_text(tests)
    junit = tmp_path / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_x.py")]
    subprocess.run([*argv, f"--junitxml={junit}"], capture_output=True, check=False, timeout=120)
    return junit


def test_parse_junit_counts_each_outcome(tmp_path: Path) -> None:
    junit = _junit(
        tmp_path,
        "import pytest\n"
        "def test_a(): pass\n"
        "def test_b(): pass\n"
        "def test_c(): assert False\n"
        "def test_d(): pytest.skip('no')\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError\n"
        "def test_e(broken): pass\n",
    )
    assert verify.parse_junit(junit) == verify.Summary(passed=2, failed=1, skipped=1, errors=1)


@pytest.mark.parametrize(
    "content", [pytest.param(None, id="missing"), pytest.param("<testsuite", id="truncated")]
)
def test_parse_junit_unreadable_is_a_verify_error(tmp_path: Path, content: str | None) -> None:
    junit = tmp_path / "junit.xml"
    if content is not None:
        junit.write_text(content)
    with pytest.raises(VerifyError, match="no readable JUnit report"):
        verify.parse_junit(junit)


def test_suite_command(tmp_path: Path) -> None:
    (tmp_path / "ks.cfg").write_text("text\n")
    spec = Spec.model_validate(
        {
            "name": "t",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "T"},
            "kickstart": {"path": "ks.cfg"},
            "source": tmp_path / "t.yaml",
        }
    )
    argv = verify.suite_command(spec, 40022, tmp_path / "ssh_config", tmp_path / "junit.xml")
    assert argv[:4] == [sys.executable, "-m", "pytest", str(verify.suite_dir())]
    assert f"--spec={tmp_path / 't.yaml'}" in argv
    assert "--hosts=ssh://root@127.0.0.1:40022" in argv
    assert f"--ssh-config={tmp_path / 'ssh_config'}" in argv
    assert f"--junitxml={tmp_path / 'junit.xml'}" in argv


def test_free_port_is_bindable_on_loopback() -> None:
    port = guest.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
