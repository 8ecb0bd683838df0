"""Networking: RHEL 7 boots with an interface down unless its ifcfg file says ONBOOT=yes."""

from __future__ import annotations

from testinfra.host import Host


def test_interfaces_onboot(host: Host, interface: str) -> None:
    ifcfg = host.file(f"/etc/sysconfig/network-scripts/ifcfg-{interface}")
    assert ifcfg.exists, f"{ifcfg.path} is missing: {interface} will not come up at boot"
    values = dict(
        line.split("=", 1)
        for line in ifcfg.content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert values.get("ONBOOT", "").strip("\"'").lower() == "yes", (
        f"{ifcfg.path} has ONBOOT={values.get('ONBOOT')!r}"
    )
