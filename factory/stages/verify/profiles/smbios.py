"""The SMBIOS (DMI) each platform presents, as QEMU `-smbios` arguments: what cloud-init detects clouds by.

    smbios.aws(instance_id).args()       -> ["-smbios", "type=0,...", "-smbios", "type=1,...", ...]
    smbios.openstack(uuid).args()
    smbios.vsphere(uuid).args()
    profile.dmi()   -> {"sys_vendor": ..., "product_uuid": ...} as /sys/class/dmi/id shows

The rules they must satisfy (cloud-init 22.4, Debian 12: tools/ds-identify and DataSourceEc2):
- **EC2** (`ec2_identify_platform`, `identify_aws`): product_uuid and product_serial both start with "ec2"
  (any case) and are equal ignoring case; then ds-identify says FOUND (not MAYBE) and the datasource treats
  the cloud as AWS, which is what makes it insist on IMDSv2 tokens. A Nitro instance also shows
  sys_vendor / bios_vendor / chassis_vendor / chassis_asset_tag "Amazon EC2" and the instance type as
  product_name.
- **OpenStack** (`dscheck_OpenStack`): product_name "OpenStack Nova" (or "OpenStack Compute"), or the chassis
  asset tag "OpenStack Nova". Nova's libvirt driver sets manufacturer "OpenStack Foundation", product
  "OpenStack Nova", the Nova version, a serial, the instance UUID and family "Virtual Machine"; the chassis
  asset tag is set here too so both of ds-identify's rules match. (With a config drive attached, ds-identify
  picks ConfigDrive by its label first; the SMBIOS is what makes the image believe it is on Nova.)
- **vSphere**: sys_vendor "VMware, Inc." makes systemd-detect-virt (and so ds-identify's DI_VIRT) say
  "vmware", which the OVF check requires to be something other than "none".

QEMU reads ",," as a literal comma inside an option, so values are escaped that way.
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from dataclasses import dataclass

# QEMU -smbios type/field -> the /sys/class/dmi/id file Linux shows it as.
DMI_FILES: dict[tuple[int, str], str] = {
    (0, "vendor"): "bios_vendor",
    (0, "version"): "bios_version",
    (1, "manufacturer"): "sys_vendor",
    (1, "product"): "product_name",
    (1, "version"): "product_version",
    (1, "serial"): "product_serial",
    (1, "uuid"): "product_uuid",
    (1, "sku"): "product_sku",
    (1, "family"): "product_family",
    (3, "manufacturer"): "chassis_vendor",
    (3, "version"): "chassis_version",
    (3, "serial"): "chassis_serial",
    (3, "asset"): "chassis_asset_tag",
}


@dataclass(frozen=True)
class Smbios:
    platform: str
    # (type, ((field, value), ...)) in the order QEMU gets them.
    tables: tuple[tuple[int, tuple[tuple[str, str], ...]], ...]

    def args(self) -> list[str]:
        out: list[str] = []
        for kind, fields in self.tables:
            body = ",".join(f"{k}={v.replace(',', ',,')}" for k, v in fields)
            out += ["-smbios", f"type={kind},{body}"]
        return out

    def dmi(self) -> dict[str, str]:
        """What the guest reads in /sys/class/dmi/id (Linux prints the UUID in lower case)."""
        found: dict[str, str] = {}
        for kind, fields in self.tables:
            for k, v in fields:
                name = DMI_FILES[(kind, k)]
                found[name] = v.lower() if name == "product_uuid" else v
        return found


def _uuid_from(seed: str) -> uuidlib.UUID:
    return uuidlib.UUID(hashlib.sha256(seed.encode()).hexdigest()[:32])


def ec2_uuid(instance_id: str) -> str:
    """A system UUID as EC2 gives one: the first three hex digits are "ec2"."""
    return "ec2" + str(_uuid_from(instance_id))[3:]


def aws(instance_id: str, instance_type: str = "t3.micro") -> Smbios:
    """A Nitro instance: the UUID and serial both "ec2…" and equal, "Amazon EC2" everywhere."""
    system_uuid = ec2_uuid(instance_id)
    return Smbios(
        platform="aws",
        tables=(
            (0, (("vendor", "Amazon EC2"), ("version", "1.0"))),
            (
                1,
                (
                    ("manufacturer", "Amazon EC2"),
                    ("product", instance_type),
                    ("serial", system_uuid),
                    ("uuid", system_uuid),
                ),
            ),
            (3, (("manufacturer", "Amazon EC2"), ("asset", "Amazon EC2"))),
        ),
    )


def openstack(instance_uuid: str, nova_version: str = "27.1.0") -> Smbios:
    """An instance on Nova's libvirt driver (the uuid is the instance's, as in meta_data.json)."""
    return Smbios(
        platform="openstack",
        tables=(
            (
                1,
                (
                    ("manufacturer", "OpenStack Foundation"),
                    ("product", "OpenStack Nova"),
                    ("version", nova_version),
                    ("serial", str(_uuid_from("host:" + instance_uuid))),
                    ("uuid", instance_uuid),
                    ("family", "Virtual Machine"),
                ),
            ),
            (3, (("asset", "OpenStack Nova"),)),
        ),
    )


def vsphere(instance_uuid: str) -> Smbios:
    """A VM on ESXi: VMware's vendor and product, the serial VMware derives from the UUID."""
    hexes = uuidlib.UUID(instance_uuid).hex
    pairs = [hexes[i : i + 2] for i in range(0, 32, 2)]
    serial = "VMware-" + " ".join(pairs[:8]) + "-" + " ".join(pairs[8:])
    return Smbios(
        platform="vsphere",
        tables=(
            (0, (("vendor", "Phoenix Technologies LTD"), ("version", "6.00"))),
            (
                1,
                (
                    ("manufacturer", "VMware, Inc."),
                    ("product", "VMware Virtual Platform"),
                    ("serial", serial),
                    ("uuid", instance_uuid),
                ),
            ),
            (3, (("manufacturer", "No Enclosure"), ("asset", "No Asset Tag"))),
        ),
    )
