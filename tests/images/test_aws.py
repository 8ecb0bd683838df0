"""Drivers the AMI's flags promise: `aws.ena: true` registers the AMI with EnaSupport, so it may launch on
Nitro instances, whose network is ENA and whose disks are NVMe. Without the ena driver such an instance
has no network; without nvme at boot it finds no root disk."""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Spec
from factory.stages.verify.checks import initramfs_candidates, initramfs_list_command, module_listed


def _promised(spec: Spec) -> None:
    if spec.aws is None:
        pytest.skip("the spec has no aws section: no AMI flags to honour")
    if not spec.aws.ena:
        pytest.skip("the spec's aws.ena is false: the AMI is not flagged for ENA (no Nitro instance types)")


def _builtin(host: Host, kernel: str) -> str:
    listing = host.file(f"/lib/modules/{kernel}/modules.builtin")
    return str(listing.content_string) if listing.exists else ""


def test_ena_module(host: Host, spec: Spec) -> None:
    _promised(spec)
    kernel = host.check_output("uname -r")
    found = host.run(f"find /lib/modules/{kernel} -name 'ena.ko*'").stdout
    assert module_listed(found, "ena") or module_listed(_builtin(host, kernel), "ena"), (
        f"kernel {kernel} has no ena driver, but aws.ena is true: on a Nitro instance this AMI has no network"
    )


def test_nvme_initramfs(host: Host, spec: Spec) -> None:
    _promised(spec)
    kernel = host.check_output("uname -r")
    if module_listed(_builtin(host, kernel), "nvme"):
        return  # built into the kernel: nothing for the initramfs to load
    initramfs = next((p for p in initramfs_candidates(kernel) if host.file(p).exists), None)
    assert initramfs is not None, (
        f"no initramfs for kernel {kernel} (looked for {initramfs_candidates(kernel)})"
    )
    listing = host.run(initramfs_list_command(initramfs)).stdout
    assert module_listed(listing, "nvme"), (
        f"{initramfs} has no nvme module and kernel {kernel} has none built in, but aws.ena is true: "
        "a Nitro instance would not find its root disk"
    )
