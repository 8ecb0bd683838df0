"""Target boot profiles on a real testbed install under QEMU (issue 15): each boot passes on the testbed,
and each catches a fault today's boot cannot see.

- aws: the testbed (cloud-init from Debian) boots on NVMe with EC2's SMBIOS, IMDSv2 and a bigger disk;
  the suite gets in only as `debian` with the key the metadata served. An image whose cloud-init is
  disabled (/etc/cloud/cloud-init.disabled) passes today's boot and fails aws.
- openstack / vsphere: the config drive and the OVF environment.
- One image with three faults, each seen by one target boot only, all passing today's boot: NVMe disabled
  at boot (built into the testbed's kernel, so the static nvme_initramfs check is satisfied;
  `initcall_blacklist=nvme_init` stands for a kernel without the driver): aws ends in dracut's emergency
  shell; a datasource_list without ConfigDrive: openstack gets no key (nothing reads the drive; a list of
  one datasource is no such case: ds-identify then trusts it without looking, and Ec2's metadata timeouts
  stall today's boot too); an initramfs rebuilt host-only for the build's virtio machine (no vmxnet3, no
  vmw_pvscsi): vsphere fails only its vmware_drivers check.
- metal: BIOS boots; UEFI is honestly not booted (the testbed installs extlinux: no ESP). An ifcfg pinned
  to the build machine's MAC (HWADDR=, as EL 7's anaconda writes it) passes today's boot and leaves the
  metal boot, on another NIC, without network.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fixtures_verify import Installed, fresh_copy, install_testbed, key_of, kickstart_with, session_testbed

from factory.stages.verify import targets
from factory.stages.verify.verify import verify

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]


def _outcomes(junit: Path) -> dict[str, list[str]]:
    return {
        str(c.get("name")).split("[")[0]: [x.tag for x in c if x.tag not in ("system-out", "system-err")]
        for c in ET.parse(junit).getroot().iter("testcase")
    }


def _boot(installed: Installed, out: Path, boot: str) -> targets.BootResult:
    return _report(targets.run_boot(installed.spec, installed.disk, out, boot, key_of(installed.build)))


def _report(result: targets.BootResult) -> targets.BootResult:
    print(
        f"{result.boot}: {result.outcome} {result.reason} ssh {result.ssh_ready_s} s suite {result.suite_s} s"
    )
    return result


def test_every_target_boot_passes_on_the_testbed(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """One run of every boot, two at a time as verify runs them: aws, openstack, vsphere and metal-bios
    pass; metal-uefi is honestly not booted."""
    installed = session_testbed(tmp_path_factory)
    aws, openstack, vsphere, bios, uefi = targets.run_boots(
        installed.spec,
        installed.disk,
        tmp_path,
        key_of(installed.build),
        ("aws", "openstack", "vsphere", "metal-bios", "metal-uefi"),
    )
    for result in (aws, openstack, vsphere, bios):
        _report(result)
        assert result.outcome == "passed", (tmp_path / result.boot / "pytest.log").read_text()
    assert aws.junit is not None
    outcomes = _outcomes(aws.junit)
    for check in ("metadata_login", "metadata_hostname", "metadata_datasource", "root_grown", "network_dhcp"):
        assert outcomes.get(f"test_{check}") == [], (check, outcomes)
    assert not (tmp_path / "aws" / "imds.txt").exists(), "cloud-init did not use an IMDSv2 token"
    assert uefi.outcome == "not-booted" and "EFI system partition" in uefi.reason


def test_disabled_cloud_init_passes_todays_boot_and_fails_aws(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = tmp_path_factory.getbasetemp() / "targets-vm"
    ks = kickstart_with(root / "ks-no-cloud-init", "touch /etc/cloud/cloud-init.disabled", cloud_init=True)
    installed = install_testbed(root, "no-cloud-init", ks, cloud_init=True)
    today = verify(installed.spec, installed.disk, installed.build, key=key_of(installed.build), boots=())
    assert today.passed, "today's boot must not see this fault"
    result = _boot(installed, tmp_path, "aws")
    assert result.outcome == "failed"
    # sshd answers, but no cloud user and no key: refused (or, on a slow host, the SSH timeout first).
    assert "refused" in result.reason or "did not answer" in result.reason, result.reason


# Three faults in one image (one install and one today's boot for three target boots), each one that
# only its target boot can see:
# - a host-only initramfs: the installed one, unpacked and packed again without VMware's drivers (busybox
#   cpio and the module list the testbed's /init loads): vsphere;
# - a datasource_list without ConfigDrive (nothing reads the config drive): openstack;
# - NVMe disabled at boot, on the kernel line (in the test): aws.
DRIVER_AND_DATASOURCE_FAULTS = """\
set -e
echo 'datasource_list: [ Ec2, OVF, None ]' > /etc/cloud/cloud.cfg.d/95_no_configdrive.cfg
kv=$(ls /lib/modules)
rm -rf /tmp/ird && mkdir /tmp/ird && cd /tmp/ird
zcat "/boot/initrd.img-$kv" | busybox cpio -i -d 2>/dev/null
find . -name 'vmxnet3.ko*' -delete
find . -name 'vmw_pvscsi.ko*' -delete
sed -i -e '/vmxnet3/d' -e '/vmw_pvscsi/d' etc/testbed/modules
find . | busybox cpio -o -H newc 2>/dev/null | gzip -6 >"/boot/initrd.img-$kv"
cd / && rm -rf /tmp/ird
"""


def test_driver_and_datasource_faults_fail_only_their_target_boot(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = tmp_path_factory.getbasetemp() / "targets-vm"
    ks = kickstart_with(root / "ks-faults", DRIVER_AND_DATASOURCE_FAULTS, cloud_init=True)
    text = ks.read_text()
    no_nvme = text.replace(
        '--append="console=ttyS0,115200', '--append="initcall_blacklist=nvme_init console=ttyS0,115200'
    )
    assert no_nvme != text, "kickstarts/testbed.ks has no bootloader --append to extend"
    ks.write_text(no_nvme)
    installed = install_testbed(root, "faults", ks, cloud_init=True)
    today = verify(installed.spec, installed.disk, installed.build, key=key_of(installed.build), boots=())
    assert today.passed, "today's boot (virtio disk and NIC, no metadata) must not see these faults"
    aws, openstack, vsphere = targets.run_boots(
        installed.spec, installed.disk, tmp_path, key_of(installed.build), ("aws", "openstack", "vsphere")
    )
    # aws: the root disk is on NVMe, which this kernel cannot drive: dracut's emergency shell, at once.
    assert aws.outcome == "failed" and "emergency shell" in aws.reason, aws.reason
    console = (tmp_path / "aws" / "console.log").read_text(errors="replace")
    assert "/dev/disk/by-label/root does not exist" in console
    # openstack: sshd answers, but nothing read the config drive: no cloud user, no key.
    assert openstack.outcome == "failed", openstack.reason
    assert "refused" in openstack.reason or "did not answer" in openstack.reason, openstack.reason
    # vsphere: boots (OVF is still listed) and fails exactly the driver check.
    assert vsphere.outcome == "failed" and vsphere.junit is not None, vsphere.reason
    failed = {
        name for name, kinds in _outcomes(vsphere.junit).items() if "failure" in kinds or "error" in kinds
    }
    assert failed == {"test_vmware_drivers"}, failed


def test_nic_pinned_to_the_build_mac_fails_metal(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    root = tmp_path_factory.getbasetemp() / "targets-vm"
    pin = 'echo "HWADDR=$(cat /sys/class/net/eth0/address)" >> /etc/sysconfig/network-scripts/ifcfg-eth0'
    installed = install_testbed(root, "hwaddr", kickstart_with(root / "ks-hwaddr", pin, cloud_init=False))
    today = verify(installed.spec, installed.disk, installed.build, key=key_of(installed.build), boots=())
    assert today.passed, "today's boot has the build's MAC: the pinned ifcfg comes up"
    (metal,) = targets.run_boots(
        installed.spec, installed.disk, tmp_path, key_of(installed.build), ("metal-bios",)
    )
    # The guest boots to its login prompt, but eth0 (another MAC) never comes up: SSH cannot answer.
    assert metal.outcome == "failed" and "did not answer" in metal.reason, metal.reason


def test_generalised_boot_then_aws_without_the_build_key(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The build's path: today's boot passes and is generalised (build key removed), then the aws boot runs
    on that generalised overlay, gets in only with the metadata key, and no login carries the build key."""
    installed = fresh_copy(session_testbed(tmp_path_factory), tmp_path)
    result = verify(
        installed.spec,
        installed.disk,
        installed.build,
        key=key_of(installed.build),
        generalise_boot=True,
        boots=("aws",),
    )
    assert result.passed, (installed.build.path / "verify" / "targets" / "aws" / "pytest.log").read_text()
    (aws,) = result.boots
    assert aws.outcome == "passed" and aws.junit is not None
    assert _outcomes(aws.junit).get("test_no_build_key") == []
    suites = [s.get("name") for s in ET.parse(result.junit).getroot().iter("testsuite")]
    assert suites == ["default", "aws"]
    print(f"default {result.default_s} s, whole verify {result.total_s} s")
