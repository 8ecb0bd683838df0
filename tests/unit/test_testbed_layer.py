"""The testbed's cloud layer: the full root filesystem minus the base, as the installer unpacks it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from factory.testbed import layer

Member = tuple[str, bytes | None, int]  # name, content (None: a directory), mode


def _tarball(path: Path, members: list[Member], *, mtime: int = 0) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, mtime
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _names(path: Path) -> dict[str, bytes | None]:
    with tarfile.open(path, "r:gz") as tar:
        out: dict[str, bytes | None] = {}
        for info in tar:
            f = tar.extractfile(info) if info.isreg() else None
            out[info.name] = f.read() if f is not None else None
        return out


BASE: list[Member] = [
    ("./etc", None, 0o755),
    ("./etc/passwd", b"root:x:0:0\n", 0o644),
    ("./etc/motd", b"hello\n", 0o644),
    ("./usr/bin/ssh", b"ELF ssh", 0o755),
    ("./var/lib/dpkg/status", b"Package: ssh\n", 0o644),
    ("./etc/obsolete.conf", b"x\n", 0o644),
]


def test_layer_holds_what_is_new_or_changed_only(tmp_path: Path) -> None:
    base = _tarball(tmp_path / "base.tar.gz", BASE)
    full = _tarball(
        tmp_path / "full.tar.gz",
        [
            ("./etc", None, 0o755),
            ("./etc/passwd", b"root:x:0:0\n", 0o644),  # same bytes, written later: not in the layer
            ("./etc/motd", b"hello\n", 0o600),  # mode changed
            ("./usr/bin/ssh", b"ELF ssh", 0o755),
            ("./usr/bin/cloud-init", b"#!/usr/bin/python3\n", 0o755),  # new
            ("./etc/cloud", None, 0o755),  # new directory
            ("./var/lib/dpkg/status", b"Package: ssh\n\nPackage: cloud-init\n", 0o644),  # content changed
        ],
        mtime=1_700_000_000,
    )
    removed = layer.write(base, full, tmp_path / "layer.tar.gz")
    got = _names(tmp_path / "layer.tar.gz")
    assert set(got) == {"./etc/motd", "./usr/bin/cloud-init", "./etc/cloud", "./var/lib/dpkg/status"}
    assert got["./var/lib/dpkg/status"] == b"Package: ssh\n\nPackage: cloud-init\n"
    assert removed == ["./etc/obsolete.conf"]


def test_layer_of_identical_systems_is_empty(tmp_path: Path) -> None:
    base = _tarball(tmp_path / "base.tar.gz", BASE)
    full = _tarball(tmp_path / "full.tar.gz", BASE, mtime=42)
    assert layer.write(base, full, tmp_path / "layer.tar.gz") == []
    assert _names(tmp_path / "layer.tar.gz") == {}
