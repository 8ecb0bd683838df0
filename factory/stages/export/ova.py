"""OVA packing: an OVF 1.0 envelope (DMTF DSP0243 / DSP8023) around one streamOptimized VMDK, a SHA256
manifest, all in one ustar archive with the descriptor first (vSphere and ovftool stream-read it in order).

The descriptor is built as data with ElementTree. The CIM settings elements (rasd:*, vssd:*) are written in
the alphabetical order their schemas declare as a sequence: ovftool and vCenter reject other orders.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from factory.core import digest
from factory.errors import ExportError
from factory.spec import Firmware, Spec

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
STREAM_OPTIMIZED = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# ustar stores sizes in 11 octal digits: 8 GiB - 1 is the largest member.
USTAR_MAX = 8**11 - 1
NETWORK = "VM Network"


@dataclass(frozen=True)
class GuestOs:
    """VMware's guest id (vim25 VirtualMachineGuestOsIdentifier) and the CIM OsType number OVF 1.0 wants."""

    vmware_id: str
    cim_id: int
    description: str


# Guest ids as govmomi's vim25/types/enum.go spells them; CIM ids from CIM_OperatingSystem.OSType
# (101 Linux 64-Bit, 107 CentOS 64-bit, 109 Oracle Enterprise Linux 64-bit). The testbed (Debian 12) is
# "other Linux 64-bit": debian12_64Guest exists only from vSphere 8 on.
GUEST_OS: dict[str, GuestOs] = {
    "centos": GuestOs("centos7_64Guest", 107, "CentOS 7 (64-bit)"),
    "oraclelinux": GuestOs("oracleLinux7_64Guest", 109, "Oracle Linux 7 (64-bit)"),
    "testbed": GuestOs("otherLinux64Guest", 101, "Other Linux (64-bit)"),
}


@dataclass(frozen=True)
class Disk:
    path: Path  # the streamOptimized VMDK
    capacity: int  # virtual size, bytes
    populated: int  # bytes of guest data in it (what an eager thick copy would write)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(parent: ET.Element, ns: str, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(
        parent, _q(ns, tag), {k if k.startswith("{") else _q(OVF, k): v for k, v in attrs.items()}
    )
    if text is not None:
        el.text = text
    return el


def _item(hw: ET.Element, fields: dict[str, str], *, required: bool = True) -> None:
    item = _sub(hw, OVF, "Item") if required else _sub(hw, OVF, "Item", required="false")
    for name in sorted(fields):  # the rasd sequence is alphabetical
        _sub(item, RASD, name, fields[name])


def descriptor(spec: Spec, disk: Disk, disk_href: str) -> bytes:
    """The OVF 1.0 descriptor for `spec`'s VM with one disk file named `disk_href` inside the OVA."""
    for prefix, ns in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vmw", VMW), ("xsi", XSI)):
        ET.register_namespace(prefix, ns)
    guest = GUEST_OS[spec.os]
    env = ET.Element(
        _q(OVF, "Envelope"),
        {"{http://www.w3.org/XML/1998/namespace}lang": "en-US"},
    )
    refs = _sub(env, OVF, "References")
    _sub(refs, OVF, "File", href=disk_href, id="file1", size=str(disk.path.stat().st_size))

    disks = _sub(env, OVF, "DiskSection")
    _sub(disks, OVF, "Info", "Virtual disk information")
    _sub(
        disks,
        OVF,
        "Disk",
        capacity=str(disk.capacity),
        capacityAllocationUnits="byte",
        diskId="vmdisk1",
        fileRef="file1",
        format=STREAM_OPTIMIZED,
        populatedSize=str(disk.populated),
    )

    nets = _sub(env, OVF, "NetworkSection")
    _sub(nets, OVF, "Info", "The logical networks the VM connects to")
    net = _sub(nets, OVF, "Network", name=NETWORK)
    _sub(net, OVF, "Description", f"The {NETWORK} network (mapped to the target's network on import)")

    vs = _sub(env, OVF, "VirtualSystem", id=spec.name)
    _sub(vs, OVF, "Info", f"{spec.name}: built by image-factory")
    _sub(vs, OVF, "Name", spec.name)
    os_section = _sub(
        vs, OVF, "OperatingSystemSection", id=str(guest.cim_id), **{_q(VMW, "osType"): guest.vmware_id}
    )
    _sub(os_section, OVF, "Info", "The guest operating system")
    _sub(os_section, OVF, "Description", guest.description)

    hw = _sub(vs, OVF, "VirtualHardwareSection")
    _sub(hw, OVF, "Info", f"{spec.vm.cpus} CPUs, {spec.vm.memory_mib} MiB, one disk, one NIC")
    system = _sub(hw, OVF, "System")
    for name, value in (
        ("ElementName", "Virtual Hardware Family"),
        ("InstanceID", "0"),
        ("VirtualSystemIdentifier", spec.name),
        ("VirtualSystemType", f"vmx-{spec.ova.hardware_version:02d}"),
    ):
        _sub(system, VSSD, name, value)
    _item(
        hw,
        {
            "AllocationUnits": "hertz * 10^6",
            "Description": "Number of virtual CPUs",
            "ElementName": f"{spec.vm.cpus} virtual CPU(s)",
            "InstanceID": "1",
            "ResourceType": "3",
            "VirtualQuantity": str(spec.vm.cpus),
        },
    )
    _item(
        hw,
        {
            "AllocationUnits": "byte * 2^20",
            "Description": "Memory size",
            "ElementName": f"{spec.vm.memory_mib} MB of memory",
            "InstanceID": "2",
            "ResourceType": "4",
            "VirtualQuantity": str(spec.vm.memory_mib),
        },
    )
    # LSI Logic Parallel: the EL 7 initramfs carries mptspi, and every vSphere and vcsim knows it.
    _item(
        hw,
        {
            "Address": "0",
            "Description": "SCSI Controller",
            "ElementName": "SCSI Controller 0",
            "InstanceID": "3",
            "ResourceSubType": "lsilogic",
            "ResourceType": "6",
        },
    )
    _item(
        hw,
        {
            "AddressOnParent": "0",
            "ElementName": "Hard Disk 1",
            "HostResource": "ovf:/disk/vmdisk1",
            "InstanceID": "4",
            "Parent": "3",
            "ResourceType": "17",
        },
    )
    _item(
        hw,
        {
            "AddressOnParent": "7",
            "AutomaticAllocation": "true",
            "Connection": NETWORK,
            "Description": f"{spec.ova.nic} ethernet adapter on {NETWORK}",
            "ElementName": "Network adapter 1",
            "InstanceID": "5",
            "ResourceSubType": "VmxNet3" if spec.ova.nic == "vmxnet3" else "E1000",
            "ResourceType": "10",
        },
    )
    if spec.ova.serial_port:
        _item(
            hw,
            {
                "AutomaticAllocation": "false",
                "Description": "Serial port (console)",
                "ElementName": "Serial port 1",
                "InstanceID": "6",
                "ResourceType": "21",
            },
            required=False,
        )
    firmware = "efi" if spec.vm.firmware is Firmware.UEFI else "bios"
    _sub(hw, VMW, "Config", required="false", **{_q(VMW, "key"): "firmware", _q(VMW, "value"): firmware})
    ET.indent(env)
    text: bytes = ET.tostring(env, encoding="utf-8", xml_declaration=True)
    return text + b"\n"


def pack(spec: Spec, disk: Disk, out: Path) -> str:
    """Write the OVA to `out` (the caller renames it into place); returns its sha256."""
    if disk.path.stat().st_size > USTAR_MAX:
        raise ExportError(
            f"{disk.path.name}: {disk.path.stat().st_size} bytes is larger than an OVA (ustar) member may be"
        )
    stem = spec.name
    disk_name = f"{stem}-disk1.vmdk"
    ovf = descriptor(spec, disk, disk_name)
    members: list[tuple[str, bytes | Path]] = [(f"{stem}.ovf", ovf)]
    disk_sha = digest.sha256_file(disk.path)
    mf = f"SHA256({stem}.ovf)= {hashlib.sha256(ovf).hexdigest()}\nSHA256({disk_name})= {disk_sha}\n"
    members += [(f"{stem}.mf", mf.encode()), (disk_name, disk.path)]
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.size = content.stat().st_size
                with content.open("rb") as fh:
                    tar.addfile(info, fh)
    return digest.sha256_file(out)
