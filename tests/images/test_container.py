"""The container profile: what only a booting machine needs is gone from a container base image."""

from __future__ import annotations

from testinfra.host import Host

KERNEL_DIRS = ("/boot", "/lib/modules", "/usr/lib/modules")


def test_no_kernel(host: Host) -> None:
    # A container runs on its host's kernel: any of these is dead weight, and a kernel to patch.
    dirs = [d for d in KERNEL_DIRS if host.file(d).is_directory]
    # One %s per folder: testinfra quotes each argument, so a joined string would be one (missing) path.
    found = host.run(
        "find " + " ".join(["%s"] * len(dirs)) + " -mindepth 1 -maxdepth 1", *dirs
    ).stdout.split()
    assert found == [], f"kernel or boot files in the container image: {found[:10]}"


def test_no_host_keys(host: Host) -> None:
    keys = host.run("ls /etc/ssh/ 2>/dev/null").stdout.split()
    left = [k for k in keys if k.startswith("ssh_host_")]
    assert left == [], f"SSH host keys in the image (every container would share them): {left}"


def test_no_machine_id(host: Host) -> None:
    machine_id = host.file("/etc/machine-id")
    assert not machine_id.exists or machine_id.size == 0, "/etc/machine-id is set: containers would share it"
