"""Services: testinfra picks systemd, sysv, upstart or OpenRC for the image."""

from __future__ import annotations

from testinfra.host import Host

from factory.spec import Expect


def test_services_enabled(host: Host, enabled_service: str) -> None:
    assert host.service(enabled_service).is_enabled, f"{enabled_service} does not start at boot"


def test_services_running(host: Host, running_service: str) -> None:
    assert host.service(running_service).is_running, f"{running_service} is not running"


def test_ssh_service(host: Host, expect: Expect) -> None:
    service = host.service(expect.ssh_service)
    # Both, or the image works once and is unreachable after its first reboot.
    assert service.is_enabled, f"{expect.ssh_service} does not start at boot"
    assert service.is_running, f"{expect.ssh_service} is not running"
