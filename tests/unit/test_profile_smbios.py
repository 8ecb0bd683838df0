"""SMBIOS per platform: the exact QEMU arguments, and cloud-init 22.4's detection rules on what guests see.

The rules below are transcribed from cloud-init 22.4's tools/ds-identify (ec2_identify_platform,
dscheck_OpenStack) and DataSourceEc2.identify_aws, applied to the /sys/class/dmi/id view each profile gives.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from factory.stages.verify.profiles import smbios

INSTANCE_ID = "i-0123456789abcdef0"
NOVA_UUID = "6a1b2c3d-1111-4222-8333-444455556666"
VM_UUID = "564d1111-2222-3333-4444-555566667777"


def ds_identify_ec2(dmi: dict[str, str]) -> bool:
    uuid, serial = dmi.get("product_uuid", ""), dmi.get("product_serial", "")
    return (
        uuid.lower().startswith("ec2") and serial.lower().startswith("ec2") and uuid.lower() == serial.lower()
    )


def datasource_identify_aws(dmi: dict[str, str]) -> bool:
    # uuid_source is "dmi" on a KVM/Nitro guest (no /sys/hypervisor/uuid): then the serial must equal it.
    uuid, serial = dmi.get("product_uuid", "").lower(), dmi.get("product_serial", "").lower()
    return uuid.startswith("ec2") and uuid == serial


def ds_identify_openstack(dmi: dict[str, str]) -> bool:
    names = ("OpenStack Nova", "OpenStack Compute")
    return dmi.get("product_name") in names or dmi.get("chassis_asset_tag") in names


def test_aws_arguments() -> None:
    profile = smbios.aws(INSTANCE_ID, instance_type="t3.micro")
    uuid = smbios.ec2_uuid(INSTANCE_ID)
    assert profile.args() == [
        "-smbios",
        "type=0,vendor=Amazon EC2,version=1.0",
        "-smbios",
        f"type=1,manufacturer=Amazon EC2,product=t3.micro,serial={uuid},uuid={uuid}",
        "-smbios",
        "type=3,manufacturer=Amazon EC2,asset=Amazon EC2",
    ]


def test_aws_uuid_is_a_uuid_starting_with_ec2_and_stable() -> None:
    uuid = smbios.ec2_uuid(INSTANCE_ID)
    assert uuid.startswith("ec2") and len(uuid) == 36 and uuid.count("-") == 4
    assert uuid == smbios.ec2_uuid(INSTANCE_ID) != smbios.ec2_uuid("i-0fedcba9876543210")


def test_aws_matches_ec2_detection_and_not_openstack() -> None:
    dmi = smbios.aws(INSTANCE_ID).dmi()
    assert ds_identify_ec2(dmi) and datasource_identify_aws(dmi)
    assert dmi["sys_vendor"] == dmi["chassis_asset_tag"] == "Amazon EC2"
    assert not ds_identify_openstack(dmi)


def test_openstack_arguments_and_detection() -> None:
    profile = smbios.openstack(NOVA_UUID)
    args = profile.args()
    assert args[0::2] == ["-smbios", "-smbios"]
    assert args[1].startswith(
        "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,version=27.1.0,"
    )
    assert f",uuid={NOVA_UUID},family=Virtual Machine" in args[1]
    assert args[3] == "type=3,asset=OpenStack Nova"
    dmi = profile.dmi()
    assert ds_identify_openstack(dmi)
    assert not ds_identify_ec2(dmi) and not datasource_identify_aws(dmi)


def test_vsphere_escapes_the_comma_in_vmware_inc() -> None:
    args = smbios.vsphere(VM_UUID).args()
    assert "manufacturer=VMware,, Inc." in args[3]
    assert "serial=VMware-56 4d 11 11 22 22 33 33-44 44 55 55 66 66 77 77" in args[3]
    dmi = smbios.vsphere(VM_UUID).dmi()
    assert dmi["sys_vendor"] == "VMware, Inc."
    assert not ds_identify_ec2(dmi) and not ds_identify_openstack(dmi)


def test_a_plain_qemu_guest_matches_none_of_them() -> None:
    dmi = {"sys_vendor": "QEMU", "product_name": "Standard PC (i440FX + PIIX, 1996)", "product_uuid": ""}
    assert not ds_identify_ec2(dmi) and not ds_identify_openstack(dmi)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu-system-x86_64")
@pytest.mark.parametrize(
    "profile",
    [smbios.aws(INSTANCE_ID), smbios.openstack(NOVA_UUID), smbios.vsphere(VM_UUID)],
    ids=["aws", "openstack", "vsphere"],
)
def test_qemu_accepts_the_arguments(profile: smbios.Smbios) -> None:
    # QEMU parses -smbios before it starts the (paused) machine: a bad field fails at once with exit 1.
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-machine",
            "pc,accel=tcg",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-monitor",
            "none",
            *profile.args(),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        qemu.wait(timeout=1.5)
    except subprocess.TimeoutExpired:
        pass  # still running: every argument was accepted
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    assert qemu.returncode == -9, qemu.stderr.read() if qemu.stderr else ""  # killed by us, not exited
