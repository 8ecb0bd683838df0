"""OVA export with the real qemu-img: the package layout, its manifest, and the OVF descriptor validated
against the OVF 1.0 envelope schema (the subset in tests/targets/ovf, see its README)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
from lxml import etree

from factory.core import digest
from factory.host import tools
from factory.spec import Spec
from factory.stages.export import export, ova

SIZE = 32 * 1024 * 1024
SCHEMA = Path(__file__).parent / "ovf" / "ovf-envelope.xsd"
NS = {"ovf": ova.OVF, "rasd": ova.RASD, "vssd": ova.VSSD, "vmw": ova.VMW}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 32 MiB qcow2 with data at both ends; and the sha256 of its raw contents."""
    work = tmp_path_factory.mktemp("src")
    disk = work / "sealed.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, str(SIZE)], timeout=60)
    tools.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            f"write -P 0x01 {SIZE - 65536} 64k",
            disk,
        ],
        timeout=60,
    )
    raw = work / "sealed.raw"
    tools.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw], timeout=60)
    return disk, digest.sha256_file(raw)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def make_spec(
    tmp_path: Path, *, os_name: str = "centos", formats: tuple[str, ...] = ("ova",), **extra: object
) -> Spec:
    raw: dict[str, object] = {
        "name": "img",
        "os": os_name,
        "media": {"builtin": "testbed", "volume_label": "X"},
        "kickstart": {"path": "t.ks"},
        "vm": {"cpus": 2, "memory_mib": 1536, "firmware": extra.pop("firmware", "bios")},
        "export": list(formats),
        "source": tmp_path / "spec.yaml",
    }
    raw.update(extra)
    return Spec.model_validate(raw)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        assert tar.getmembers()[0].name.endswith(".ovf"), "the descriptor must come first"
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_ova_layout_manifest_and_disk(
    tmp_path: Path, image: tuple[Path, str], schema: etree.XMLSchema
) -> None:
    disk, raw_sha = image
    out = tmp_path / "out"
    (art,) = export.export(make_spec(tmp_path), disk, digest.sha256_file(disk), out).artifacts
    assert (art.format, art.path, art.sha256) == ("ova", out / "img.ova", digest.sha256_file(out / "img.ova"))
    # Only the OVA: the vmdk it wraps was not asked for, so it is not left beside it.
    assert sorted(p.name for p in out.iterdir()) == ["img.ova", "img.ova.sha256", "manifest.json"]
    with tarfile.open(art.path) as tar:
        assert [m.name for m in tar.getmembers()] == ["img.ovf", "img.mf", "img-disk1.vmdk"]
        assert all(m.type == tarfile.REGTYPE for m in tar.getmembers())
    files = members(art.path)
    mf = dict(line.split("= ") for line in files["img.mf"].decode().splitlines())
    assert mf == {
        "SHA256(img.ovf)": hashlib.sha256(files["img.ovf"]).hexdigest(),
        "SHA256(img-disk1.vmdk)": hashlib.sha256(files["img-disk1.vmdk"]).hexdigest(),
    }
    vmdk = tmp_path / "inner.vmdk"
    vmdk.write_bytes(files["img-disk1.vmdk"])
    info = export.image_info(vmdk, "vmdk")
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"
    back = tmp_path / "back.raw"
    tools.run(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", vmdk, back], timeout=60)
    assert digest.sha256_file(back) == raw_sha
    doc = etree.fromstring(files["img.ovf"])
    schema.assertValid(doc)
    (file_el,) = doc.findall("ovf:References/ovf:File", NS)
    assert file_el.get(f"{{{ova.OVF}}}href") == "img-disk1.vmdk"
    assert int(file_el.get(f"{{{ova.OVF}}}size")) == len(files["img-disk1.vmdk"])
    (disk_el,) = doc.findall("ovf:DiskSection/ovf:Disk", NS)
    assert disk_el.get(f"{{{ova.OVF}}}format") == ova.STREAM_OPTIMIZED
    assert int(disk_el.get(f"{{{ova.OVF}}}capacity")) == SIZE
    assert 0 < int(disk_el.get(f"{{{ova.OVF}}}populatedSize")) <= SIZE


def hardware(doc: etree._Element) -> dict[str, dict[str, str]]:
    """ResourceType -> {rasd field: value} of every Item."""
    items = {}
    for item in doc.findall(".//ovf:VirtualHardwareSection/ovf:Item", NS):
        fields = {etree.QName(el).localname: el.text or "" for el in item}
        items[fields["ResourceType"]] = fields
    return items


@pytest.mark.parametrize(
    ("os_name", "ids"),
    [
        pytest.param("centos", ("centos7_64Guest", "107"), id="centos7"),
        pytest.param("oraclelinux", ("oracleLinux7_64Guest", "109"), id="oraclelinux7"),
        pytest.param("testbed", ("otherLinux64Guest", "101"), id="testbed"),
    ],
)
def test_guest_os_ids(
    tmp_path: Path, image: tuple[Path, str], schema: etree.XMLSchema, os_name: str, ids: tuple[str, str]
) -> None:
    disk, _ = image
    doc = etree.fromstring(
        ova.descriptor(make_spec(tmp_path, os_name=os_name), ova.Disk(disk, SIZE, 1), "d.vmdk")
    )
    schema.assertValid(doc)
    os_el = doc.find(".//ovf:OperatingSystemSection", NS)
    assert os_el is not None
    assert (os_el.get(f"{{{ova.VMW}}}osType"), os_el.get(f"{{{ova.OVF}}}id")) == ids


def test_virtual_hardware_from_the_spec(
    tmp_path: Path, image: tuple[Path, str], schema: etree.XMLSchema
) -> None:
    disk, _ = image
    spec = make_spec(
        tmp_path, firmware="uefi", ova={"hardware_version": 17, "nic": "e1000", "serial_port": True}
    )
    doc = etree.fromstring(ova.descriptor(spec, ova.Disk(disk, SIZE, 1), "d.vmdk"))
    schema.assertValid(doc)
    assert doc.findtext(".//vssd:VirtualSystemType", namespaces=NS) == "vmx-17"
    hw = hardware(doc)
    assert hw["3"]["VirtualQuantity"] == "2"
    assert (hw["4"]["VirtualQuantity"], hw["4"]["AllocationUnits"]) == ("1536", "byte * 2^20")
    assert hw["6"]["ResourceSubType"] == "lsilogic"
    assert (hw["17"]["HostResource"], hw["17"]["Parent"]) == ("ovf:/disk/vmdisk1", hw["6"]["InstanceID"])
    assert (hw["10"]["ResourceSubType"], hw["10"]["Connection"]) == ("E1000", ova.NETWORK)
    assert "21" in hw
    config = doc.find(".//vmw:Config", NS)
    assert config is not None and config.get(f"{{{ova.VMW}}}value") == "efi"


def test_defaults_vmx13_vmxnet3_bios_no_serial(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    doc = etree.fromstring(ova.descriptor(make_spec(tmp_path), ova.Disk(disk, SIZE, 1), "d.vmdk"))
    assert doc.findtext(".//vssd:VirtualSystemType", namespaces=NS) == "vmx-13"
    hw = hardware(doc)
    assert hw["10"]["ResourceSubType"] == "VmxNet3"
    assert "21" not in hw
    config = doc.find(".//vmw:Config", NS)
    assert config is not None and config.get(f"{{{ova.VMW}}}value") == "bios"


def test_schema_rejects_rasd_out_of_order(
    tmp_path: Path, image: tuple[Path, str], schema: etree.XMLSchema
) -> None:
    # The check can fail: the same descriptor with two rasd fields swapped is invalid.
    disk, _ = image
    doc = etree.fromstring(ova.descriptor(make_spec(tmp_path), ova.Disk(disk, SIZE, 1), "d.vmdk"))
    item = doc.find(".//ovf:Item", NS)
    assert item is not None
    first = item[0]
    item.remove(first)
    item.append(first)
    assert not schema.validate(doc)


def test_ova_beside_vmdk_keeps_both(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    out = tmp_path / "out"
    arts = export.export(
        make_spec(tmp_path, formats=("vmdk", "ova")), disk, digest.sha256_file(disk), out
    ).artifacts
    assert [a.format for a in arts] == ["vmdk", "ova"]
    assert members(arts[1].path)["img-disk1.vmdk"] == arts[0].path.read_bytes()
