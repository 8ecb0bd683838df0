"""verify's way in: the build key when there is one, else a throw-away key for the overlay only."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from factory.core.record import BuildDir
from factory.errors import VerifyError
from factory.spec import Accel
from factory.stages.verify import access
from factory.vm import sshkey

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE image-factory-verify-access"


@pytest.fixture
def build(tmp_path: Path) -> BuildDir:
    return BuildDir.create(tmp_path, "tb")


def test_script_appends_the_key_with_root_only_modes() -> None:
    lines = access.guestfish_script(KEY).splitlines()
    assert lines[:3] == ["mkdir-p /root/.ssh", "chmod 0700 /root/.ssh", "chown 0 0 /root/.ssh"]
    # Appended (never written over), on a line of its own.
    assert lines[3] == f'write-append /root/.ssh/authorized_keys "\\n{KEY}\\n"'
    assert lines[4:6] == ["chmod 0600 /root/.ssh/authorized_keys", "chown 0 0 /root/.ssh/authorized_keys"]
    assert lines[6] == '-setxattr security.selinux "system_u:object_r:ssh_home_t:s0" 31 /root/.ssh'
    assert lines[-1] == "echo ::done"


def test_script_quotes_what_guestfish_would_read_as_syntax() -> None:
    line = access.guestfish_script('ssh-ed25519 AAAA "quoted\\comment"').splitlines()[3]
    assert line == 'write-append /root/.ssh/authorized_keys "\\nssh-ed25519 AAAA \\"quoted\\\\comment\\"\\n"'


@pytest.mark.parametrize(
    "bad", ["", "   ", "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two"], ids=["empty", "blank", "two-lines"]
)
def test_script_refuses_anything_but_one_key_line(bad: str) -> None:
    with pytest.raises(VerifyError, match="one authorized_keys line"):
        access.guestfish_script(bad)


def test_build_key_present_logs_in_as_before(build: BuildDir) -> None:
    key = sshkey.create(build.key)
    with access.login(build, Accel.TCG) as login:
        assert login.key == key
        assert login.prepare_disk is None and not login.throwaway
        assert login.stage == "verify"


def test_no_build_key_makes_a_throwaway_key_and_removes_it(build: BuildDir) -> None:
    with access.login(build, Accel.TCG) as login:
        assert login.throwaway and login.stage == access.REVERIFY_STAGE
        private = login.key.private
        assert private.is_file() and stat.S_IMODE(private.stat().st_mode) == 0o600
        assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700
        assert login.key.public.startswith("ssh-ed25519 ") and login.key.public.endswith(
            access.ACCESS_COMMENT
        )
        # Never in the build directory, which outlives the run.
        assert build.path not in private.parents
    assert not private.exists() and not private.parent.exists()
    assert not (build.path / "build-key").exists()


def test_throwaway_key_is_removed_when_the_run_fails(build: BuildDir) -> None:
    with pytest.raises(VerifyError), access.login(build, Accel.TCG) as login:
        folder = login.key.private.parent
        raise VerifyError("boot failed")
    assert not folder.exists()


def test_public_half_without_private_half_is_no_build_key(build: BuildDir) -> None:
    # A build whose private key was deleted (sealing does that) but a stray .pub left: not usable.
    (build.path / "build-key.pub").write_text("ssh-ed25519 AAAA image-factory-build-key\n")
    with access.login(build, Accel.TCG) as login:
        assert login.throwaway
        assert os.path.basename(login.key.private) == "access-key"


# --- the offline write itself, on real ext4 images (mkfs.ext4 -d, qcow2, overlay): the debugfs way -------


def _ext4_image(folder: Path, files: dict[str, bytes]) -> Path:
    root = folder / "root"
    for rel, data in {"etc/os-release": b"ID=debian\n", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "root").mkdir(exist_ok=True)
    raw = folder / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, "-L", "root", raw, "32M"], check=True)
    image = folder / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, image], check=True)
    return image


def _overlay(image: Path) -> Path:
    path = image.with_name("overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, path], check=True)
    return path


def _read(disk: Path, request: str) -> str:
    raw = disk.with_suffix(".check.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", disk, raw], check=True)
    try:
        out = subprocess.run(["debugfs", "-R", request, raw], capture_output=True, check=True).stdout.decode()
        fsck = subprocess.run(["e2fsck", "-fn", raw], check=False, capture_output=True)
        assert fsck.returncode == 0, fsck.stdout.decode()
        return out
    finally:
        raw.unlink()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ext4_key_goes_into_the_overlay_only(tmp_path: Path) -> None:
    image = _ext4_image(tmp_path, {})
    before = _sha(image)
    disk = _overlay(image)
    access.authorize_offline(disk, KEY, "tcg")
    assert _sha(image) == before
    assert _read(disk, "cat /root/.ssh/authorized_keys") == KEY + "\n"
    assert "Mode:  0700" in _read(disk, "stat /root/.ssh") and "User:     0" in _read(disk, "stat /root/.ssh")
    assert "Mode:  0600" in _read(disk, "stat /root/.ssh/authorized_keys")
    # The image itself still has no .ssh, and the overlay holds only the few changed pieces.
    assert (
        "File not found"
        in subprocess.run(
            ["debugfs", "-R", "stat /root/.ssh", tmp_path / "fs.img"], check=False, capture_output=True
        ).stderr.decode()
    )
    assert disk.stat().st_size < 8 * access.CHUNK
    assert not list(tmp_path.glob("factory-offline-*"))


def test_ext4_existing_keys_are_kept_and_a_missing_newline_is_added(tmp_path: Path) -> None:
    theirs = b"ssh-rsa AAAAB3 someone@else"  # no final newline
    image = _ext4_image(tmp_path, {"root/.ssh/authorized_keys": theirs})
    disk = _overlay(image)
    access.authorize_offline(disk, KEY, "tcg")
    assert _read(disk, "cat /root/.ssh/authorized_keys") == theirs.decode() + "\n" + KEY + "\n"


def test_ext4_selinux_image_gets_the_ssh_home_label(tmp_path: Path) -> None:
    image = _ext4_image(tmp_path, {"etc/selinux/config": b"SELINUX=enforcing\n"})
    disk = _overlay(image)
    access.authorize_offline(disk, KEY, "tcg")
    assert access.SSH_HOME_CONTEXT in _read(disk, "ea_list /root/.ssh/authorized_keys")


def test_disk_without_an_ext_root_is_left_to_guestfish(tmp_path: Path) -> None:
    blank = tmp_path / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", blank, "16M"], check=True)
    assert access._authorize_ext(blank, KEY) is False
