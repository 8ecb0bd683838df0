"""The metadata server reached from a real guest through QEMU's user network, as the `aws` profile wires it.

The testbed installer's kernel and initramfs boot with the EC2 SMBIOS and `netdev_options()`; its kickstart
URL points at http://169.254.169.254/..., so its busybox `nc` GET travels guest -> libslirp guestfwd ->
relay.py -> MetadataServer. It sends no IMDSv2 token, so the answer is 401: the request log proves the path.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from factory.stages.verify.profiles import imds, smbios
from factory.testbed import build_testbed

pytestmark = pytest.mark.vm

KS_PATH = "/latest/meta-data/instance-id"


def test_guest_reaches_imds_through_guestfwd_cmd(tmp_path: Path) -> None:
    tb = build_testbed()
    instance = imds.Ec2Instance(
        instance_id="i-0123456789abcdef0",
        hostname="ip-169-254-169-15.ec2.internal",
        public_key="ssh-ed25519 AAAA test",
        mac="02:00:00:00:00:01",
    )
    console = tmp_path / "console.log"
    with imds.MetadataServer(instance) as server:
        argv = [
            "qemu-system-x86_64",
            "-machine",
            "pc,accel=tcg",
            "-m",
            "512",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(tb.kernel),
            "-initrd",
            str(tb.initrd),
            "-append",
            f"console=ttyS0 inst.ks=http://{imds.IMDS_ADDRESS}{KS_PATH} inst.repo=http://{imds.IMDS_ADDRESS}/repo",
            *smbios.aws(instance.instance_id).args(),
            "-netdev",
            f"user,id=n0,{server.netdev_options()}",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={instance.mac}",
        ]
        qemu = subprocess.Popen(argv, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and qemu.poll() is None:
                if any(r.path == KS_PATH for r in server.requests):
                    break
                time.sleep(1)
        finally:
            qemu.kill()
            _, err = qemu.communicate(timeout=30)
        seen = [r for r in server.requests if r.path == KS_PATH]
    assert seen, (
        f"no request reached the server; qemu: {err.decode()[-500:]}; console: {console.read_text()[-1500:]}"
    )
    # No token (the installer is no IMDSv2 client): refused exactly as EC2 refuses it.
    assert seen[0] == imds.Request("GET", KS_PATH, False, 401)
