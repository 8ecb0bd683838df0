"""Host dependency checks: missing tools, the OS family, and installing with a stand-in package manager."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from factory.errors import ToolError
from factory.host import hostdeps, tools
from factory.host.hostdeps import Missing


def test_check_lists_only_missing_tools_once(tmp_path: Path) -> None:
    present_file = tmp_path / "isolinux.bin"
    present_file.write_bytes(b"x")
    missing = hostdeps.check(
        ["sh", "qemu-img-does-not-exist", str(present_file), "/nonexistent/ldlinux.c32", "sh",
         "qemu-img-does-not-exist"]
    )  # fmt: skip
    assert missing == [
        Missing("qemu-img-does-not-exist", "qemu-img-does-not-exist", "qemu-img-does-not-exist"),
        Missing("/nonexistent/ldlinux.c32", "/nonexistent/ldlinux.c32", "/nonexistent/ldlinux.c32"),
    ]


def test_check_uses_the_package_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert hostdeps.check(["qemu-img", "ssh-keygen"]) == [
        Missing("qemu-img", "qemu-utils", "qemu-img"),
        Missing("ssh-keygen", "openssh-client", "openssh-clients"),
    ]


@pytest.mark.parametrize(
    ("content", "family"),
    [
        pytest.param('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n', "debian", id="debian"),
        pytest.param("ID=ubuntu\nID_LIKE=debian\n", "debian", id="ubuntu"),
        pytest.param('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "debian", id="mint-id-like"),
        pytest.param("ID=fedora\n", "fedora", id="fedora"),
        pytest.param('ID="rhel"\nID_LIKE="fedora"\n', "fedora", id="rhel"),
        pytest.param('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "fedora", id="rocky"),
        pytest.param('ID="ol"\nID_LIKE="fedora"\n', "fedora", id="oracle-linux"),
        pytest.param("ID=alpine\n", None, id="alpine-unknown"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="no-os-release"),
    ],
)
def test_os_family(tmp_path: Path, content: str | None, family: str | None) -> None:
    path = tmp_path / "os-release"
    if content is not None:
        path.write_text(content)
    assert hostdeps.os_family(path) == family


MISSING = [Missing("qemu-img", "qemu-utils", "qemu-img"), Missing("ssh", "openssh-client", "openssh-clients"),
           Missing("ssh-keygen", "openssh-client", "openssh-clients")]  # fmt: skip


def test_install_command_per_family() -> None:
    assert hostdeps.install_command(MISSING, "debian") == [
        "apt-get",
        "install",
        "-y",
        "qemu-utils",
        "openssh-client",
    ]
    assert hostdeps.install_command(MISSING, "fedora") == [
        "dnf",
        "install",
        "-y",
        "qemu-img",
        "openssh-clients",
    ]


def test_ensure_without_install_names_both_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError) as err:
        hostdeps.ensure(["qemu-img", "xorriso"])
    assert err.value.exit_code == 3
    assert err.value.message == (
        "missing host tools: qemu-img, xorriso; install them with: "
        "`apt-get install -y qemu-utils xorriso` (Debian/Ubuntu) or "
        "`dnf install -y qemu-img xorriso` (Fedora/RHEL), or run with --install-host-deps as root"
    )


def test_ensure_passes_when_present() -> None:
    hostdeps.ensure(["sh"])  # raises if sh were reported missing
    assert hostdeps.check(["sh"]) == []


def test_install_as_non_root_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostdeps, "_is_root", lambda: False)
    with pytest.raises(ToolError, match=r"`apt-get install -y qemu-utils openssh-client`.*needs root"):
        hostdeps.install_missing(MISSING)


def test_install_on_unknown_os_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hostdeps, "_is_root", lambda: True)
    (tmp_path / "os-release").write_text("ID=alpine\n")
    with pytest.raises(ToolError, match=r"unknown OS family"):
        hostdeps.install_missing(MISSING, os_release=tmp_path / "os-release")


def _fake_package_manager(bin_dir: Path, name: str, log: Path, *, creates: Path | None, status: int) -> None:
    """A stand-in apt-get/dnf: records its argv (and DEBIAN_FRONTEND), may 'install' a program."""
    script = bin_dir / name
    make = f'printf "#!/bin/sh\\n" > {creates}; chmod +x {creates}\n' if creates else ""
    script.write_text(
        f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {log}\n{make}echo "E: broken" >&2\nexit {status}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(
    ("release", "manager", "logged"),
    [
        pytest.param("ID=debian\n", "apt-get", "noninteractive install -y fake-deb", id="debian"),
        pytest.param("ID=fedora\n", "dnf", " install -y fake-rpm", id="fedora"),
    ],
)
def test_install_runs_the_family_package_manager(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, release: str, manager: str, logged: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _fake_package_manager(bin_dir, manager, log, creates=bin_dir / "factory-fake-tool", status=0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.delenv("DEBIAN_FRONTEND", raising=False)
    monkeypatch.setattr(hostdeps, "_is_root", lambda: True)
    monkeypatch.setitem(tools.PACKAGES, "factory-fake-tool", ("fake-deb", "fake-rpm"))
    (tmp_path / "os-release").write_text(release)
    missing = hostdeps.check(["factory-fake-tool"])
    assert missing == [Missing("factory-fake-tool", "fake-deb", "fake-rpm")]
    hostdeps.install_missing(missing, os_release=tmp_path / "os-release")
    assert log.read_text() == logged + "\n"
    assert hostdeps.check(["factory-fake-tool"]) == []


def test_install_failure_is_a_tool_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_package_manager(bin_dir, "apt-get", tmp_path / "calls.log", creates=None, status=100)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(hostdeps, "_is_root", lambda: True)
    (tmp_path / "os-release").write_text("ID=debian\n")
    with pytest.raises(ToolError, match=r"apt-get failed with exit status 100: E: broken"):
        hostdeps.install_missing(
            [Missing("factory-fake-tool", "fake-deb", "fake-rpm")], os_release=tmp_path / "os-release"
        )


def test_install_that_does_not_provide_the_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_package_manager(bin_dir, "apt-get", tmp_path / "calls.log", creates=None, status=0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr(hostdeps, "_is_root", lambda: True)
    (tmp_path / "os-release").write_text("ID=debian\n")
    with pytest.raises(ToolError, match=r"succeeded but these are still missing: factory-fake-tool"):
        hostdeps.install_missing(
            [Missing("factory-fake-tool", "fake-deb", "fake-rpm")], os_release=tmp_path / "os-release"
        )
