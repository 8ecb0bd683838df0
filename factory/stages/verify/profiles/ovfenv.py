"""VMware's OVF environment for the `vsphere` boot profile: `ovf-env.xml` on an ISO (the iso transport).

    write_ovf_iso(path, OvfInstance(instance_id=..., hostname=..., public_key=..., mac=...)) -> Path

vSphere hands a vApp's properties to the guest as an OVF 1.1 Environment document (DSP8027 schema,
namespace http://schemas.dmtf.org/ovf/environment/1): `Environment` with a `PlatformSection` (Kind, Version,
Vendor, Locale), a `PropertySection` of `Property oe:key=... oe:value=...`, and VMware's
`ve:EthernetAdapterSection`. With the "ISO image" transport it writes that document as `ovf-env.xml` on a
CD-ROM labelled `OVF ENV`.

What cloud-init 22.4 (Debian 12) reads of it (DataSourceOVF, transport_iso9660):
- ds-identify takes an ISO on /dev/sr* labelled `OVF ENV` (or OVF-TRANSPORT/OVFENV) as OVF, provided the
  virtualisation is not "none" (the `smbios.vsphere()` DMI makes systemd-detect-virt say vmware);
- the datasource mounts each iso9660 CD-ROM and reads `ovf-env.xml` (or ovf_env.xml / OVF_ENV.XML);
- the *first* PropertySection directly under Environment, its direct `Property` children, their
  namespaced `oe:key` / `oe:value` attributes;
- keys: `instance-id`, `hostname` (as local-hostname), `public-keys`, `seedfrom`, `password`,
  `user-data` (base64) and `network-config` (base64 YAML with a top-level `network:`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from factory.stages.verify.profiles import isofs

LABEL = "OVF ENV"
FILENAME = "ovf-env.xml"
OVF_ENV_NS = "http://schemas.dmtf.org/ovf/environment/1"
VMWARE_NS = "http://www.vmware.com/schema/ovfenv"


@dataclass(frozen=True)
class OvfInstance:
    instance_id: str
    hostname: str
    public_key: str  # one authorized_keys line
    mac: str
    user_data: bytes | None = None
    network_config: bytes | None = None  # YAML with a top-level "network:" (cloud-init's v1/v2 config)
    vcenter_id: str = "vm-1001"
    network: str = "VM Network"
    platform_version: str = "8.0.2"

    def properties(self) -> dict[str, str]:
        props = {
            "instance-id": self.instance_id,
            "hostname": self.hostname,
            "public-keys": self.public_key,
        }
        if self.user_data is not None:
            props["user-data"] = base64.b64encode(self.user_data).decode()
        if self.network_config is not None:
            props["network-config"] = base64.b64encode(self.network_config).decode()
        return props


def document(instance: OvfInstance) -> str:
    """The ovf-env.xml text, in the shape vSphere writes it."""
    props = "\n".join(
        f"      <Property oe:key={quoteattr(k)} oe:value={quoteattr(v)}/>"
        for k, v in instance.properties().items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Environment\n"
        f'     xmlns="{OVF_ENV_NS}"\n'
        '     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
        f'     xmlns:oe="{OVF_ENV_NS}"\n'
        f'     xmlns:ve="{VMWARE_NS}"\n'
        '     oe:id=""\n'
        f"     ve:vCenterId={quoteattr(instance.vcenter_id)}>\n"
        "   <PlatformSection>\n"
        "      <Kind>VMware ESXi</Kind>\n"
        f"      <Version>{escape(instance.platform_version)}</Version>\n"
        "      <Vendor>VMware, Inc.</Vendor>\n"
        "      <Locale>en</Locale>\n"
        "   </PlatformSection>\n"
        "   <PropertySection>\n"
        f"{props}\n"
        "   </PropertySection>\n"
        "   <ve:EthernetAdapterSection>\n"
        f"      <ve:Adapter ve:mac={quoteattr(instance.mac.lower())} ve:network={quoteattr(instance.network)}"
        ' ve:unitNumber="7"/>\n'
        "   </ve:EthernetAdapterSection>\n"
        "</Environment>\n"
    )


def write_ovf_iso(path: Path, instance: OvfInstance) -> Path:
    """Write the transport ISO (ovf-env.xml at its root) to `path` (atomically); attach it as a CD-ROM."""
    return isofs.write_iso(path, LABEL, {FILENAME: document(instance).encode()})
