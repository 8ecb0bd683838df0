"""The config drive and the OVF environment ISO, read back as a guest would (pycdlib, Rock Ridge names)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from xml.dom import minidom

import pytest

from factory.errors import VerifyError
from factory.stages.verify.profiles import configdrive, isofs, ovfenv
from factory.stages.verify.profiles.configdrive import NovaInstance
from factory.stages.verify.profiles.ovfenv import OvfInstance

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLE verify@profile"
MAC = "52:54:00:12:34:56"
NOVA = NovaInstance(
    uuid="6a1b2c3d-1111-4222-8333-444455556666", hostname="tb-os.novalocal", public_key=KEY, mac=MAC
)


def test_config_drive_label_and_files(tmp_path: Path) -> None:
    iso = configdrive.write_config_drive(tmp_path / "config.iso", NOVA)
    label, files = isofs.read_iso(iso)
    assert label == "config-2"
    assert sorted(files) == [
        f"openstack/{v}/{name}"
        for v in ("2018-08-27", "latest")
        for name in ("meta_data.json", "network_data.json", "vendor_data.json")
    ]
    assert not list(tmp_path.glob(".*.tmp"))


def test_config_drive_meta_data(tmp_path: Path) -> None:
    _, files = isofs.read_iso(configdrive.write_config_drive(tmp_path / "c.iso", NOVA))
    for version in configdrive.VERSIONS:
        md = json.loads(files[f"openstack/{version}/meta_data.json"])
        assert md["uuid"] == NOVA.uuid
        assert md["hostname"] == "tb-os.novalocal" and md["name"] == "tb-os"
        assert md["public_keys"] == {"factory-verify": KEY}
        assert md["keys"] == [{"name": "factory-verify", "type": "ssh", "data": KEY}]
        assert md["availability_zone"] == "nova" and md["launch_index"] == 0
        assert len(base64.b64decode(md["random_seed"])) == 512


def test_config_drive_network_data_dhcp_on_the_profile_mac(tmp_path: Path) -> None:
    _, files = isofs.read_iso(configdrive.write_config_drive(tmp_path / "c.iso", NOVA))
    nd = json.loads(files["openstack/latest/network_data.json"])
    (link,) = nd["links"]
    assert link["ethernet_mac_address"] == MAC
    (net,) = nd["networks"]
    assert net["type"] == "ipv4_dhcp" and net["link"] == link["id"]
    assert nd["services"] == [{"type": "dns", "address": "10.0.2.3"}]


def test_config_drive_user_data_only_when_given(tmp_path: Path) -> None:
    ud = b"#cloud-config\nruncmd: [[touch, /run/ud-ran]]\n"
    with_ud = NovaInstance(**{**NOVA.__dict__, "user_data": ud})
    _, files = isofs.read_iso(configdrive.write_config_drive(tmp_path / "c.iso", with_ud))
    assert files["openstack/latest/user_data"] == ud == files["openstack/2018-08-27/user_data"]


OVF = OvfInstance(
    instance_id="vm-verify-1",
    hostname="tb-vsphere",
    public_key=KEY,
    mac="00:50:56:AA:BB:CC",
    user_data=b"#cloud-config\nhostname: tb-vsphere\n",
)


def cloud_init_properties(xml: str) -> dict[str, str]:
    """Read as cloud-init 22.4's DataSourceOVF.get_properties does (first PropertySection, oe: attrs)."""
    root = minidom.parseString(xml).documentElement
    assert root is not None and root.localName == "Environment"
    sections = [n for n in root.childNodes if n.localName == "PropertySection"]
    props = {}
    for elem in sections[0].childNodes:
        if isinstance(elem, minidom.Element) and elem.localName == "Property":
            props[elem.getAttributeNS(ovfenv.OVF_ENV_NS, "key")] = elem.getAttributeNS(
                ovfenv.OVF_ENV_NS, "value"
            )
    return props


def test_ovf_iso_label_and_file(tmp_path: Path) -> None:
    label, files = isofs.read_iso(ovfenv.write_ovf_iso(tmp_path / "ovf.iso", OVF))
    assert label == "OVF ENV"
    assert list(files) == ["ovf-env.xml"]
    # ds-identify greps the device for the namespace before it calls it OVF.
    assert ovfenv.OVF_ENV_NS.encode() in (tmp_path / "ovf.iso").read_bytes()
    assert (tmp_path / "ovf.iso").stat().st_size < 10 * 1024 * 1024


def test_ovf_properties_as_cloud_init_reads_them(tmp_path: Path) -> None:
    _, files = isofs.read_iso(ovfenv.write_ovf_iso(tmp_path / "ovf.iso", OVF))
    props = cloud_init_properties(files["ovf-env.xml"].decode())
    assert props["instance-id"] == "vm-verify-1"
    assert props["hostname"] == "tb-vsphere"
    assert props["public-keys"] == KEY
    assert base64.b64decode(props["user-data"]) == OVF.user_data
    assert "network-config" not in props


def test_ovf_platform_section_and_adapter() -> None:
    dom = minidom.parseString(ovfenv.document(OVF))
    (platform,) = dom.getElementsByTagNameNS(ovfenv.OVF_ENV_NS, "PlatformSection")
    kinds = {n.localName: n.firstChild.data for n in platform.childNodes if n.nodeType == n.ELEMENT_NODE}  # type: ignore[union-attr]
    assert kinds == {"Kind": "VMware ESXi", "Version": "8.0.2", "Vendor": "VMware, Inc.", "Locale": "en"}
    (adapter,) = dom.getElementsByTagNameNS(ovfenv.VMWARE_NS, "Adapter")
    assert adapter.getAttributeNS(ovfenv.VMWARE_NS, "mac") == "00:50:56:aa:bb:cc"


def test_ovf_values_are_escaped() -> None:
    nasty = OvfInstance(instance_id='a"b<c>&d', hostname="h", public_key="k\nl", mac=MAC)
    props = cloud_init_properties(ovfenv.document(nasty))
    assert props["instance-id"] == 'a"b<c>&d' and props["public-keys"] == "k\nl"


@pytest.mark.parametrize("label", ["", "x" * 33], ids=["empty-label", "label-too-long"])
def test_iso_label_out_of_bounds_is_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(VerifyError, match="volume label"):
        isofs.write_iso(tmp_path / "x.iso", label, {"a": b""})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "member", ["/etc/passwd", "../up", "a/../../b"], ids=["absolute", "dotdot", "inner-dotdot"]
)
def test_iso_member_outside_the_image_is_refused(tmp_path: Path, member: str) -> None:
    with pytest.raises(VerifyError, match="relative path"):
        isofs.write_iso(tmp_path / "x.iso", "L", {member: b""})
