"""Filesystems: type and size as declared (EL 7 images: xfs root filling the disk)."""

from __future__ import annotations

from testinfra.host import Host

from factory.spec import Filesystem
from factory.stages.verify.checks import df_size_bytes

GIB = 1024**3


def test_filesystems(host: Host, filesystem: Filesystem) -> None:
    mount = host.mount_point(filesystem.mount)
    assert mount.exists, f"nothing is mounted on {filesystem.mount}"
    assert mount.filesystem == filesystem.fstype, (
        f"{filesystem.mount} is {mount.filesystem}, not {filesystem.fstype}"
    )
    if filesystem.min_size_gib is not None:
        size = df_size_bytes(host.check_output("df -P -k %s", filesystem.mount))
        assert size >= filesystem.min_size_gib * GIB, (
            f"{filesystem.mount} is {size / GIB:.2f} GiB, less than {filesystem.min_size_gib} GiB"
        )
