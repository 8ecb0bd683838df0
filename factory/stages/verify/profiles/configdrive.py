"""OpenStack's config drive for the `openstack` boot profile, laid out as Nova writes it.

    write_config_drive(path, NovaInstance(uuid=..., hostname=..., public_key=..., mac=...)) -> Path

An ISO9660 volume labelled `config-2` (what cloud-init's ConfigDrive datasource and ds-identify look for,
with Rock Ridge and Joliet as Nova's genisoimage writes it) holding, for `latest` and for one dated version:
`openstack/<v>/meta_data.json` (uuid, hostname, name, public_keys, keys, availability_zone, launch_index,
project_id, meta, devices, random_seed), `openstack/<v>/network_data.json` (one link with the profile's MAC,
an `ipv4_dhcp` network on it, the user network's DNS as a service) and `openstack/<v>/user_data` when there
is user data. cloud-init 22.4 picks the newest dated version it knows (2018-08-27 is its newest) and falls
back to `latest`; ds-identify finds the drive by its label. Nova also writes `ec2/`; cloud-init reads it only
for block-device names, so it is left out.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from factory.stages.verify.profiles import isofs

LABEL = "config-2"
# The newest OpenStack metadata version cloud-init 22.4 knows (helpers/openstack.OS_ROCKY).
DATED_VERSION = "2018-08-27"
VERSIONS = (DATED_VERSION, "latest")
USER_NET_DNS = "10.0.2.3"  # QEMU user networking's resolver


@dataclass(frozen=True)
class NovaInstance:
    uuid: str
    hostname: str
    public_key: str  # one authorized_keys line
    mac: str
    key_name: str = "factory-verify"
    availability_zone: str = "nova"
    project_id: str = "0f0f0f0f0f0f4f0f8f0f0f0f0f0f0f0f"
    user_data: bytes | None = None
    dns: str = USER_NET_DNS

    @property
    def link_id(self) -> str:
        # Nova names the link after the port's tap device.
        return "tap" + hashlib.sha256(self.mac.lower().encode()).hexdigest()[:11]

    def meta_data(self) -> dict[str, object]:
        # A stable seed per instance (Nova sends 512 random bytes; the guest only feeds them to its RNG).
        seed = hashlib.sha512(self.uuid.encode()).digest() * 8
        return {
            "uuid": self.uuid,
            "meta": {},
            "public_keys": {self.key_name: self.public_key},
            "keys": [{"name": self.key_name, "type": "ssh", "data": self.public_key}],
            "hostname": self.hostname,
            "name": self.hostname.split(".", 1)[0],
            "launch_index": 0,
            "availability_zone": self.availability_zone,
            "random_seed": base64.b64encode(seed).decode(),
            "project_id": self.project_id,
            "devices": [],
        }

    def network_data(self) -> dict[str, object]:
        return {
            "links": [
                {
                    "id": self.link_id,
                    "vif_id": self.uuid,
                    "type": "ovs",
                    "mtu": 1500,
                    "ethernet_mac_address": self.mac.lower(),
                }
            ],
            "networks": [
                {
                    "id": "network0",
                    "type": "ipv4_dhcp",
                    "link": self.link_id,
                    "network_id": self.uuid,
                }
            ],
            "services": [{"type": "dns", "address": self.dns}],
        }


def files(instance: NovaInstance) -> dict[str, bytes]:
    """The drive's files by path, as Nova writes them (JSON without indentation)."""
    out: dict[str, bytes] = {}
    for version in VERSIONS:
        base = f"openstack/{version}"
        out[f"{base}/meta_data.json"] = json.dumps(instance.meta_data()).encode()
        out[f"{base}/network_data.json"] = json.dumps(instance.network_data()).encode()
        out[f"{base}/vendor_data.json"] = b"{}"
        if instance.user_data is not None:
            out[f"{base}/user_data"] = instance.user_data
    return out


def write_config_drive(path: Path, instance: NovaInstance) -> Path:
    """Write the config drive ISO to `path` (atomically); attach it to the guest as a CD-ROM or disk."""
    return isofs.write_iso(path, LABEL, files(instance))
