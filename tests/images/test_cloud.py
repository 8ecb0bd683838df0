"""Cloud readiness: an AWS image needs cloud-init to take the instance's keys and hostname."""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Expect


def test_cloud_init(host: Host, expect: Expect) -> None:
    if not expect.cloud_init:
        pytest.skip("the spec's expect.cloud_init is false")
    assert host.package("cloud-init").is_installed, "cloud-init is not installed"
