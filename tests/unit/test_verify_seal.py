"""Sealing without a VM: the cleanup script run for real against a fake root, and the re-check's judge."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from factory import seal
from factory.errors import VerifyError
from factory.sshkey import KEY_COMMENT

USER_KEY = "ssh-ed25519 AAAAuser alice@example"
BUILD_KEY = f"ssh-ed25519 AAAAbuild {KEY_COMMENT}"


def _tree(root: Path) -> None:
    files = {
        "root/.ssh/authorized_keys": f"{USER_KEY}\n{BUILD_KEY}\n",
        "etc/ssh/ssh_host_ed25519_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAhost\n",
        "etc/ssh/sshd_config": "PermitRootLogin prohibit-password\n",
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "var/log/messages": "boot noise\n",
        "var/log/anaconda/anaconda.log": "install noise\n",
        "var/log/journal/abc/system.journal": "binary\n",
        "root/.bash_history": "ls\n",
        "var/lib/dhclient/dhclient-eth0.leases": "lease {}\n",
        "etc/sysconfig/network-scripts/ifcfg-eth0": 'DEVICE=eth0\nHWADDR=52:54:00:12:34:56\nUUID="x"\n'
        "ONBOOT=yes\n",
        "root/anaconda-ks.cfg": "rootpw --lock\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def cleaned(tmp_path: Path) -> tuple[Path, list[str]]:
    _tree(tmp_path)
    proc = subprocess.run(
        ["sh", "-c", seal.cleanup_script(), "sh", str(tmp_path)], capture_output=True, text=True, check=True
    )
    return tmp_path, proc.stdout.splitlines()


def test_build_key_line_removed_other_keys_kept(cleaned: tuple[Path, list[str]]) -> None:
    root, removed = cleaned
    assert (root / "root/.ssh/authorized_keys").read_text() == f"{USER_KEY}\n"
    assert f"{root}/root/.ssh/authorized_keys: build key line" in removed


def test_host_keys_removed_config_kept(cleaned: tuple[Path, list[str]]) -> None:
    root, _ = cleaned
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]


def test_machine_id_truncated_not_deleted(cleaned: tuple[Path, list[str]]) -> None:
    root, _ = cleaned
    assert (root / "etc/machine-id").read_text() == ""


def test_logs_truncated_and_journal_emptied(cleaned: tuple[Path, list[str]]) -> None:
    root, _ = cleaned
    assert (root / "var/log/messages").read_text() == ""
    assert (root / "var/log/anaconda/anaconda.log").read_text() == ""
    assert (root / "var/log/journal").is_dir()
    assert list((root / "var/log/journal").iterdir()) == []


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param("root/.bash_history", id="history"),
        pytest.param("var/lib/dhclient/dhclient-eth0.leases", id="dhcp-lease"),
        pytest.param("root/anaconda-ks.cfg", id="kickstart"),
    ],
)
def test_files_removed(cleaned: tuple[Path, list[str]], gone: str) -> None:
    root, removed = cleaned
    assert not (root / gone).exists()
    assert str(root / gone) in removed


def test_ifcfg_loses_hwaddr_and_uuid_only(cleaned: tuple[Path, list[str]]) -> None:
    root, _ = cleaned
    assert (root / "etc/sysconfig/network-scripts/ifcfg-eth0").read_text() == "DEVICE=eth0\nONBOOT=yes\n"


def test_cleanup_of_a_clean_tree_removes_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", "-c", seal.cleanup_script(), "sh", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


GOOD = (
    "::ssh\nmoduli\nsshd_config\n::authorized_keys\nssh-ed25519 AAAAuser alice\n"
    "::machine-id\n0\n::kickstart\nfalse\n::end\n"
)


@pytest.mark.parametrize(
    ("output", "problems"),
    [
        pytest.param(GOOD, [], id="clean"),
        pytest.param(
            GOOD.replace("::authorized_keys\n", "::authorized_keys\n::machine-id\n"), [], id="no-key-file"
        ),
        pytest.param(GOOD.replace("alice", KEY_COMMENT), ["the build key"], id="build-key-left"),
        pytest.param(GOOD.replace("moduli", "ssh_host_rsa_key"), ["SSH host keys"], id="host-key-left"),
        pytest.param(
            GOOD.replace("::machine-id\n0", "::machine-id\n33"), ["/etc/machine-id"], id="machine-id"
        ),
        pytest.param(GOOD.replace("false", "true"), ["anaconda-ks.cfg"], id="kickstart-left"),
    ],
)
def test_parse_recheck(output: str, problems: list[str]) -> None:
    check = seal.parse_recheck(output)
    found = check.problems()
    assert len(found) == len(problems)
    for got, want in zip(found, problems, strict=True):
        assert want in got
    assert check.passed is (problems == [])


def test_parse_recheck_cut_short_is_an_error() -> None:
    with pytest.raises(VerifyError, match="did not complete"):
        seal.parse_recheck(GOOD.replace("::end\n", ""))


@pytest.mark.parametrize(
    ("accel", "settings"), [pytest.param("tcg", "force_tcg", id="tcg"), pytest.param("kvm", None, id="kvm")]
)
def test_guestfish_follows_the_accelerator(accel: str, settings: str | None) -> None:
    assert seal.guestfish_env(accel).get("LIBGUESTFS_BACKEND_SETTINGS") == settings
