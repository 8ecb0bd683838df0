"""The libguestfs way of verify's offline access key (roots debugfs cannot write: xfs, LVM on EL 7), for real.

Marked vm: libguestfs boots its appliance (under TCG here). The disk is a small ext4 "Debian" so the result
can be read back independently with debugfs; the guestfish commands are the same for any filesystem.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from factory.stages.verify import access

pytestmark = pytest.mark.vm

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGUESTFISH image-factory-verify-access"


def test_guestfish_appends_the_key_to_the_overlay_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel, text in {
        "etc/os-release": 'ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n',
        "etc/debian_version": "12.0\n",
        "etc/fstab": "LABEL=root / ext4 defaults 0 1\n",
        "root/.ssh/authorized_keys": "ssh-rsa AAAAB3 theirs",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "bin").mkdir()
    shutil.copy("/bin/true", root / "bin" / "sh")
    fs = tmp_path / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, "-L", "root", fs, "64M"], check=True)
    image = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", fs, image], check=True)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay], check=True
    )

    access.authorize_guestfish(overlay, KEY, "tcg")

    assert hashlib.sha256(image.read_bytes()).hexdigest() == before
    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", overlay, raw], check=True)

    def debugfs(request: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", request, raw], capture_output=True, check=True
        ).stdout.decode()

    assert debugfs("cat /root/.ssh/authorized_keys") == f"ssh-rsa AAAAB3 theirs\n{KEY}\n"
    assert "Mode:  0600" in debugfs("stat /root/.ssh/authorized_keys")
    assert "Mode:  0700" in debugfs("stat /root/.ssh")
    assert access.SSH_HOME_CONTEXT in debugfs("ea_list /root/.ssh/authorized_keys")
