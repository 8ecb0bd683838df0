"""Target boot profiles without a VM: which boots a spec calls for, the target machine's QEMU argv, the
ESP probe that decides whether a UEFI boot can happen, the merged JUnit and the facts handed to the suite."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from factory.errors import SpecError, VerifyError
from factory.spec import load_spec
from factory.stages.verify import bootfacts, checks, targets
from factory.stages.verify.verify import parse_junit
from factory.vm.qemu import Disk, VmConfig, command

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path, **changes: object) -> Path:
    raw = yaml.safe_load((ROOT / "specs" / "testbed.yaml").read_text())
    raw["kickstart"]["path"] = str(ROOT / "kickstarts" / "testbed.ks")
    # The demo spec opts out of target boots (its time goal): these tests start from the default.
    raw["expect"].pop("target_boots", None)
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path = tmp_path / "testbed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_spec_publishing_to_aws_gets_the_aws_boot(tmp_path: Path) -> None:
    assert targets.planned(load_spec(_spec(tmp_path))) == ("aws",)


def test_the_demo_spec_runs_no_target_boot() -> None:
    assert targets.planned(load_spec(ROOT / "specs" / "testbed.yaml")) == ()


def test_a_pxe_export_means_metal_bios_and_uefi(tmp_path: Path) -> None:
    spec = load_spec(
        _spec(tmp_path, aws=None, export=["raw", "pxe"], pxe={"base_url": "http://10.0.0.1/testbed"})
    )
    assert targets.planned(spec) == ("metal-bios", "metal-uefi")


def test_expect_target_boots_overrides_the_targets(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "specs" / "testbed.yaml").read_text())
    raw["expect"].pop("target_boots")
    assert targets.planned(load_spec(_spec(tmp_path, expect={**raw["expect"], "target_boots": []}))) == ()
    chosen = {**raw["expect"], "target_boots": ["metal-bios", "aws"]}
    assert targets.planned(load_spec(_spec(tmp_path, expect=chosen))) == ("aws", "metal-bios")


def test_an_unknown_target_boot_in_the_spec_is_a_spec_error(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "specs" / "testbed.yaml").read_text())
    with pytest.raises(SpecError, match="target_boots"):
        load_spec(_spec(tmp_path, expect={**raw["expect"], "target_boots": ["gcp"]}))


def test_raw_alone_is_not_metal(tmp_path: Path) -> None:
    assert targets.planned(load_spec(_spec(tmp_path, aws=None, export=["raw"]))) == ()


def test_an_unknown_boot_is_refused(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    with pytest.raises(VerifyError, match="unknown target boot"):
        targets.run_boots(spec, tmp_path / "x.qcow2", tmp_path, None, ("gcp",))  # type: ignore[arg-type]


def test_nvme_disk_mac_and_netdev_options_in_the_argv() -> None:
    cfg = VmConfig(
        Path("/b/s"),
        Path("/b/q"),
        disks=(Disk(Path("/b/d.qcow2"), interface="nvme"),),
        mac="0a:3f:5c:11:22:33",
        netdev_options="net=169.254.169.0/24",
    )
    argv = command(cfg)
    assert argv[argv.index("-drive") + 1] == "file=/b/d.qcow2,format=qcow2,if=none,id=nvme0"
    assert "nvme,drive=nvme0,serial=vol00000000000000000" in argv
    assert argv[argv.index("-netdev") + 1] == "user,id=net0,net=169.254.169.0/24"
    assert "virtio-net-pci,netdev=net0,mac=0a:3f:5c:11:22:33" in argv


def _mbr(*types: int) -> bytearray:
    head = bytearray(1 << 20)
    for i, t in enumerate(types):
        head[446 + 16 * i + 4] = t
    head[510:512] = b"\x55\xaa"
    return head


def test_esp_in_an_mbr() -> None:
    assert targets.has_esp(bytes(_mbr(0x83, 0xEF)))


def test_linux_only_mbr_has_no_esp() -> None:
    assert not targets.has_esp(bytes(_mbr(0x83)))


def test_esp_in_a_gpt() -> None:
    head = _mbr(0xEE)
    head[512:520] = b"EFI PART"
    head[512 + 72 : 512 + 80] = (2).to_bytes(8, "little")
    head[512 + 80 : 512 + 84] = (128).to_bytes(4, "little")
    head[512 + 84 : 512 + 88] = (128).to_bytes(4, "little")
    head[1024 + 128 : 1024 + 144] = targets.ESP_GUID
    assert targets.has_esp(bytes(head))
    head[1024 + 128 : 1024 + 144] = bytes(16)
    assert not targets.has_esp(bytes(head))


def test_no_partition_table_has_no_esp() -> None:
    assert not targets.has_esp(bytes(1024))


def test_target_checks_skip_on_todays_boot() -> None:
    assert checks.boot_skip_reason("default", "metadata_login") is not None
    assert checks.boot_skip_reason("aws", "metadata_login") is None
    assert checks.boot_skip_reason("metal-bios", "root_grown") is not None
    assert checks.boot_skip_reason("default", "ssh_service") is None


def _junit(path: Path, failures: int) -> Path:
    path.write_text(
        f'<testsuites><testsuite name="pytest" tests="3" failures="{failures}" skipped="1" errors="0">'
        '<testcase classname="tests.images.test_boot" name="test_serial_console"/></testsuite></testsuites>'
    )
    return path


def test_merged_junit_shows_every_boot(tmp_path: Path) -> None:
    default = _junit(tmp_path / "junit.xml", 0)
    aws = _junit(tmp_path / "aws.xml", 1)
    boots = (
        targets.BootResult("aws", "failed", junit=aws),
        targets.BootResult("metal-uefi", "not-booted", reason="no ESP"),
        targets.BootResult("metal-bios", "failed", reason="no SSH"),
    )
    targets.merge_junit(default, boots)
    names = [s.get("name") for s in ET.parse(default).getroot().iter("testsuite")]
    assert names == ["default", "aws", "metal-uefi", "metal-bios"]
    s = parse_junit(default)
    assert (s.failed, s.skipped) == (2, 3)
    assert [b.ok for b in boots] == [False, True, False]


def test_boot_facts_round_trip(tmp_path: Path) -> None:
    facts = bootfacts.BootFacts(boot="aws", user="debian", public_key="ssh-ed25519 AAAA x", min_root_bytes=5)
    assert bootfacts.read(bootfacts.write(tmp_path / "f.json", facts)) == facts
