"""Target boot checks: the image as each platform boots it (factory.stages.verify.targets).

They run only in a target boot (`--boot=aws` ...) and compare the guest with what that boot told it
(`boot_facts`): cloud-init must have taken the metadata's key for the cloud user (the suite is logged in
with it, not with the build key), set the hostname, picked the datasource by its own detection, grown
the root to the bigger disk; the NIC (another MAC than the build's) must have its address from DHCP.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from testinfra.host import Host

from factory.stages.verify.bootfacts import BootFacts
from factory.stages.verify.checks import (
    df_size_bytes,
    initramfs_candidates,
    initramfs_list_command,
    module_listed,
)


def _home(host: Host, user: str) -> str:
    return str(host.check_output(f"getent passwd {user} | cut -d: -f6"))


def _keys_of(host: Host, user: str) -> str:
    path = f"{_home(host, user)}/.ssh/authorized_keys"
    f = host.file(path)
    return str(f.content_string) if f.exists else ""


def _key_body(line: str) -> str:
    """type and base64 of an authorized_keys line (options and comment aside)."""
    words = line.split()
    for i, w in enumerate(words):
        if w.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(words):
            return f"{w} {words[i + 1]}"
    return line.strip()


def test_metadata_login(host: Host, boot_facts: BootFacts) -> None:
    # Under --sudo the session's own user is sudo's caller: the user SSH logged in as.
    who = host.check_output("echo ${SUDO_USER:-$(id -un)}")
    assert who == boot_facts.user, f"logged in as {who!r}, not the cloud user {boot_facts.user!r}"
    assert _key_body(boot_facts.public_key) in _keys_of(host, boot_facts.user), (
        f"{boot_facts.user}'s authorized_keys lacks the key the {boot_facts.boot} metadata served"
    )


def test_metadata_hostname(host: Host, boot_facts: BootFacts) -> None:
    name = host.check_output("hostname")
    assert name.split(".")[0] == boot_facts.hostname.split(".")[0], (
        f"hostname is {name!r}, the {boot_facts.boot} metadata said {boot_facts.hostname!r}"
    )


def test_metadata_datasource(host: Host, boot_facts: BootFacts) -> None:
    result = host.file("/run/cloud-init/result.json")
    assert result.exists, "cloud-init did not finish (no /run/cloud-init/result.json)"
    doc = json.loads(result.content_string)["v1"]
    datasource = str(doc.get("datasource") or "")
    assert f"DataSource{boot_facts.datasource}" in datasource, (
        f"cloud-init used {datasource!r}, not the {boot_facts.datasource} datasource"
    )
    assert not doc.get("errors"), f"cloud-init reported errors: {doc['errors']}"


def test_root_grown(host: Host, boot_facts: BootFacts) -> None:
    size = df_size_bytes(host.check_output("df -P -k /"))
    assert size >= boot_facts.min_root_bytes, (
        f"/ is {size / 2**30:.2f} GiB on a disk that allows {boot_facts.min_root_bytes / 2**30:.2f} GiB: "
        "the root did not grow (growpart/resizefs)"
    )


def test_network_dhcp(host: Host, boot_facts: BootFacts) -> None:
    link = host.check_output("ip -o link show 2>/dev/null || busybox ip -o link show")
    assert boot_facts.mac.lower() in link.lower(), f"no NIC with the target's MAC {boot_facts.mac}"
    addrs = host.check_output("ip -o -4 addr show 2>/dev/null || busybox ip -o -4 addr show")
    net = ipaddress.ip_network(boot_facts.network)
    found = [w.split("/")[0] for w in addrs.split() if "/" in w and w[0].isdigit()]
    assert any(ipaddress.ip_address(a) in net for a in found), (
        f"no address in the target's DHCP network {net} (have {', '.join(found) or 'none'})"
    )
    route = host.check_output("ip -4 route show default 2>/dev/null || busybox ip -4 route show default")
    assert route.strip(), "no default route"


def test_no_build_key(host: Host, boot_facts: BootFacts) -> None:
    if not boot_facts.sealed:
        pytest.skip("the image is not sealed yet: seal removes the build key (re-checked after seal)")
    body = _key_body(boot_facts.build_key)
    users = host.check_output("getent passwd | cut -d: -f1").split()
    carriers = [u for u in users if body in _keys_of(host, u)]
    assert not carriers, f"the build key still logs in as {', '.join(carriers)}"


def test_vmware_drivers(host: Host) -> None:
    kernel = host.check_output("uname -r")
    builtin_file = host.file(f"/lib/modules/{kernel}/modules.builtin")
    builtin = str(builtin_file.content_string) if builtin_file.exists else ""
    initramfs = next((p for p in initramfs_candidates(kernel) if host.file(p).exists), None)
    listing = host.run(initramfs_list_command(initramfs)).stdout if initramfs else ""
    missing = [
        m for m in ("vmxnet3", "vmw_pvscsi") if not (module_listed(builtin, m) or module_listed(listing, m))
    ]
    assert not missing, (
        f"{initramfs or 'no initramfs'} (kernel {kernel}) lacks {', '.join(missing)}: a vSphere VM with a "
        "vmxnet3 NIC / pvscsi disk would have no network or no root"
    )
