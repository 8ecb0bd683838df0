"""Boot: the serial console must be on the kernel command line, or a cloud's console log shows nothing."""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Expect
from factory.stages.verify.checks import console_args


def test_serial_console(host: Host, expect: Expect) -> None:
    if not expect.serial_console:
        pytest.skip("the spec's expect.serial_console is false")
    cmdline = host.file("/proc/cmdline").content_string
    consoles = console_args(cmdline)
    assert any(c.startswith("ttyS0") for c in consoles), (
        f"no console=ttyS0 in /proc/cmdline: {cmdline.strip()}"
    )
