"""SELinux mode as declared; `absent` is an OS without SELinux (the testbed)."""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Expect, SELinux


def test_selinux_mode(host: Host, expect: Expect) -> None:
    if expect.selinux is SELinux.ABSENT:
        pytest.skip("the spec's expect.selinux is `absent`: this OS has no SELinux")
    assert host.exists("getenforce"), "getenforce is missing: SELinux tools are not installed"
    mode = host.check_output("getenforce").strip().lower()
    assert mode == expect.selinux.value, f"SELinux is {mode}, not {expect.selinux.value}"
