"""Kernel flavour: Oracle Linux defaults to UEK, which AWS import rejected; the spec says which to boot."""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Expect, Kernel
from factory.stages.verify.checks import kernel_flavour


def _skip_if_any(expect: Expect) -> None:
    if expect.kernel is Kernel.ANY:
        pytest.skip("the spec's expect.kernel is `any`: this OS has one kernel flavour")


def test_default_kernel(host: Host, expect: Expect) -> None:
    _skip_if_any(expect)
    assert host.exists("grubby"), "grubby is missing: cannot tell the default kernel of an EL image"
    default = host.check_output("grubby --default-kernel")
    assert kernel_flavour(default) == expect.kernel.value, (
        f"default kernel {default} is not {expect.kernel.value}"
    )


def test_running_kernel(host: Host, expect: Expect) -> None:
    _skip_if_any(expect)
    running = host.check_output("uname -r")
    assert kernel_flavour(running) == expect.kernel.value, (
        f"running kernel {running} is not {expect.kernel.value}"
    )
