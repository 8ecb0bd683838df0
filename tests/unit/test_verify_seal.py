"""Sealing without a VM: the shipped cleanup (seal.sh) run for real against a fake root, the offline re-check
reading real ext4 images with debugfs, and the re-check's judge."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from factory.core import offline
from factory.errors import ToolError
from factory.stages.seal import generalise, seal
from factory.vm.sshkey import KEY_COMMENT

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
        ["sh", str(generalise.SCRIPT), str(tmp_path), KEY_COMMENT], capture_output=True, text=True, check=True
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
        ["sh", str(generalise.SCRIPT), str(tmp_path), KEY_COMMENT],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def _image(tmp_path: Path, files: dict[str, str], *, partitioned: bool) -> Path:
    """A real ext4 image filled from a folder (as mkfs.ext4 -d does for the testbed), optionally behind an
    MBR partition table with a separate /boot first (as an installed disk has), as qcow2."""
    tree = tmp_path / "tree"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    root_fs = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", tree, root_fs, "32M"], check=True)
    raw = tmp_path / "disk.raw"
    if partitioned:
        boot_tree = tmp_path / "boot"
        boot_tree.mkdir()
        (boot_tree / "vmlinuz").write_text("kernel")
        boot_fs = tmp_path / "boot.ext4"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", boot_tree, boot_fs, "16M"], check=True)
        raw.write_bytes(b"")
        os_truncate(raw, 1 + 16 + 32 + 1)
        table = "label: dos\nstart=2048, size=32768, type=83\nstart=34816, size=65536, type=83\n"
        subprocess.run(["sfdisk", "-q", raw], input=table, text=True, check=True)
        for fs, sector in ((boot_fs, 2048), (root_fs, 34816)):
            subprocess.run(
                ["dd", f"if={fs}", f"of={raw}", "bs=512", f"seek={sector}", "conv=notrunc", "status=none"],
                check=True,
            )
    else:
        raw = root_fs
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, image], check=True)
    return image


def os_truncate(path: Path, mib: int) -> None:
    with path.open("r+b") as f:
        f.truncate(mib << 20)


CLEAN = {
    "etc/ssh/sshd_config": "PermitRootLogin prohibit-password\n",
    "etc/machine-id": "",
    "root/.ssh/authorized_keys": f"{USER_KEY}\n",
}


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        pytest.param({}, [], id="clean"),
        pytest.param({"root/.ssh/authorized_keys": None}, [], id="no-key-file"),
        pytest.param(
            {"root/.ssh/authorized_keys": f"{USER_KEY}\n{BUILD_KEY}\n"},
            ["the build key"],
            id="build-key-left",
        ),
        pytest.param({"etc/ssh/ssh_host_rsa_key": "key"}, ["SSH host keys"], id="host-key-left"),
        pytest.param({"etc/machine-id": "0123456789abcdef\n"}, ["/etc/machine-id"], id="machine-id"),
        pytest.param({"etc/machine-id": None}, [], id="no-machine-id"),
        pytest.param({"root/anaconda-ks.cfg": "rootpw --lock\n"}, ["anaconda-ks.cfg"], id="kickstart-left"),
    ],
)
@pytest.mark.parametrize("partitioned", [pytest.param(True, id="mbr"), pytest.param(False, id="bare-fs")])
def test_offline_recheck_of_a_real_image(
    tmp_path: Path, changes: dict[str, str | None], problems: list[str], partitioned: bool
) -> None:
    files = {k: v for k, v in {**CLEAN, **changes}.items() if v is not None}
    image = _image(tmp_path, files, partitioned=partitioned)
    check, reader = seal.recheck(image, "tcg")
    assert reader == "debugfs"  # ext4: read without booting an appliance
    found = check.problems()
    assert len(found) == len(problems)
    for got, want in zip(found, problems, strict=True):
        assert want in got
    assert check.passed is (problems == [])


def test_partitions_finds_ext_after_boot(tmp_path: Path) -> None:
    image = _image(tmp_path, CLEAN, partitioned=True)
    with offline.raw_copy(image) as raw:
        parts = offline.partitions(raw)
    assert [(p.offset, p.fstype) for p in parts] == [(2048 * 512, "ext"), (34816 * 512, "ext")]


def test_guestfish_output_cut_short_is_an_error() -> None:
    with pytest.raises(ToolError, match="cut short"):
        offline.parse_guestfish("::dir /etc/ssh\nsshd_config\n", ["/etc/ssh"], [])


def test_guestfish_output_parsed() -> None:
    out = (
        "::dir /etc/ssh\nmoduli\nsshd_config\n::isfile /etc/machine-id\ntrue\n::file /etc/machine-id\n"
        "::isfile /root/anaconda-ks.cfg\nfalse\n::file /root/anaconda-ks.cfg\n::end\n"
    )
    snap = offline.parse_guestfish(out, ["/etc/ssh"], ["/etc/machine-id", "/root/anaconda-ks.cfg"])
    assert snap.listings == {"/etc/ssh": ("moduli", "sshd_config")}
    assert snap.contents == {"/etc/machine-id": b"", "/root/anaconda-ks.cfg": None}
    assert seal.judge(snap).passed


@pytest.mark.parametrize(
    ("accel", "settings"), [pytest.param("tcg", "force_tcg", id="tcg"), pytest.param("kvm", None, id="kvm")]
)
def test_guestfish_follows_the_accelerator(accel: str, settings: str | None) -> None:
    assert offline.guestfish_env(accel).get("LIBGUESTFS_BACKEND_SETTINGS") == settings


def test_guestfish_gets_a_kernel_of_its_own() -> None:
    env = offline.guestfish_env("tcg")
    assert Path(env["SUPERMIN_KERNEL"]).is_file()
    assert (Path(env["SUPERMIN_MODULES"]) / "modules.dep").is_file()
