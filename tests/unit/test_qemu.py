"""The QEMU command line as data: exact argv for given configs, and bad configs refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import UsageError
from factory.vm.qemu import Disk, HostFwd, VmConfig, command

S = Path("/b/console.sock")
Q = Path("/b/qmp.sock")
HEAD = ["qemu-system-x86_64", "-name", "factory", "-nodefaults", "-display", "none", "-machine", "pc"]
TAIL = [
    "-chardev",
    "socket,id=ser0,path=/b/console.sock,server=on,wait=on",
    "-serial",
    "chardev:ser0",
    "-qmp",
    "unix:/b/qmp.sock,server=on,wait=off",
]
NET = ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]
TCG = ["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"]

CASES = [
    pytest.param(VmConfig(S, Q), [*HEAD, *TCG, *NET, *TAIL, "-no-reboot"], id="minimal"),
    pytest.param(
        VmConfig(S, Q, accel="kvm", memory_mib=2048, cpus=2, network=False, no_reboot=False),
        [*HEAD, "-accel", "kvm", "-cpu", "host", "-m", "2048", "-smp", "2", *TAIL],
        id="kvm-no-net-reboot-allowed",
    ),
    pytest.param(
        VmConfig(
            S,
            Q,
            kernel=Path("/b/vmlinuz"),
            initrd=Path("/b/initrd.img"),
            append=r"inst.ks=http://10.0.2.2:8000/t/ks.cfg inst.stage2=hd:LABEL=CentOS\x207\x20x86_64",
            disks=(Disk(Path("/b/disk.qcow2.part")),),
            cdrom=Path("/c/x.iso"),
            anaconda_log=Path("/b/anaconda.log"),
        ),
        [
            *HEAD,
            *TCG,
            "-kernel",
            "/b/vmlinuz",
            "-initrd",
            "/b/initrd.img",
            "-append",
            r"inst.ks=http://10.0.2.2:8000/t/ks.cfg inst.stage2=hd:LABEL=CentOS\x207\x20x86_64",
            "-drive",
            "file=/b/disk.qcow2.part,format=qcow2,if=virtio,index=0",
            "-drive",
            "file=/c/x.iso,format=raw,if=ide,index=2,media=cdrom,readonly=on",
            *NET,
            "-chardev",
            "socket,id=ser0,path=/b/console.sock,server=on,wait=on",
            "-serial",
            "chardev:ser0",
            "-device",
            "virtio-serial-pci,id=vser0",
            "-chardev",
            "file,id=anacondalog,path=/b/anaconda.log",
            "-device",
            "virtserialport,bus=vser0.0,chardev=anacondalog,name=org.fedoraproject.anaconda.log.0",
            "-qmp",
            "unix:/b/qmp.sock,server=on,wait=off",
            "-no-reboot",
        ],
        id="install-kernel-mode",
    ),
    pytest.param(
        VmConfig(
            S,
            Q,
            firmware="uefi",
            boot_order="d",
            cdrom=Path("/c/serial.iso"),
            disks=(
                Disk(Path("/i/a,b.qcow2"), snapshot=True),
                Disk(Path("/i/seed.raw"), "raw", readonly=True),
            ),
            hostfwd=(HostFwd(40022, 22), HostFwd(40080, 80)),
        ),
        [
            *HEAD,
            *TCG,
            "-bios",
            "/usr/share/ovmf/OVMF.fd",
            "-drive",
            "file=/i/a,,b.qcow2,format=qcow2,if=virtio,index=0,snapshot=on",
            "-drive",
            "file=/i/seed.raw,format=raw,if=virtio,index=1,readonly=on",
            "-drive",
            "file=/c/serial.iso,format=raw,if=ide,index=2,media=cdrom,readonly=on",
            "-boot",
            "order=d",
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:40080-:80",
            "-device",
            "virtio-net-pci,netdev=net0",
            *TAIL,
            "-no-reboot",
        ],
        id="uefi-snapshot-readonly-hostfwd-comma-in-path",
    ),
]


@pytest.mark.parametrize(("cfg", "argv"), CASES)
def test_command_is_exact(cfg: VmConfig, argv: list[str]) -> None:
    assert command(cfg) == argv


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(VmConfig(S, Q, initrd=Path("/b/initrd.img")), id="initrd-without-kernel"),
        pytest.param(VmConfig(S, Q, append="console=ttyS0"), id="append-without-kernel"),
    ],
)
def test_command_refuses_inconsistent_config(cfg: VmConfig) -> None:
    with pytest.raises(UsageError, match="without a kernel"):
        command(cfg)


def test_hostfwd_binds_loopback_only() -> None:
    argv = command(VmConfig(S, Q, hostfwd=(HostFwd(1, 2),)))
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:1-:2" in netdev
    assert "hostfwd=tcp::" not in netdev


def test_pxe_command_line_has_no_medium(tmp_path: Path) -> None:
    cfg = VmConfig(
        serial_socket=tmp_path / "s", qmp_socket=tmp_path / "q", tftp_root=tmp_path / "tftp",
        bootfile="pxelinux.0", boot_order="n",
    )  # fmt: skip
    argv = command(cfg)
    assert f"user,id=net0,tftp={tmp_path / 'tftp'},bootfile=pxelinux.0" in argv
    assert "order=n" in argv and not any("media=cdrom" in a for a in argv)
