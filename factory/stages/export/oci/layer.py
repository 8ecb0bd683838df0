"""One reproducible image layer from a folder: the same tree always gives the same bytes.

    write(tree, out, epoch=..., exclude=...) -> Layer(diff_id, digest, size, entries)

What makes it reproducible: entries in sorted path order (parents first), PAX format, numeric owners only
(no user or group names, which would be the host's), mtimes clamped to `epoch` (SOURCE_DATE_EPOCH), no atime
or ctime records, whole-second times; gzip with no file name and mtime 0 at a fixed level. Hard links within
the tree become tar hard links (the first path in sorted order holds the data). Sockets, fifos and device
nodes are left out: a container runtime makes /dev itself.

`exclude` holds absolute glob patterns (fnmatch, matched against "/path/in/image"): a matching entry is left
out with everything below it, so "/boot/*" keeps an empty /boot and "/boot" removes it.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

GZIP_LEVEL = 6
CHUNK = 1 << 20


@dataclass(frozen=True)
class Layer:
    path: Path
    diff_id: str  # "sha256:..." of the uncompressed tar (the config's rootfs.diff_ids)
    digest: str  # "sha256:..." of the gzip blob (the manifest's layer digest)
    size: int  # bytes of the gzip blob
    tar_size: int
    entries: int
    excluded: tuple[str, ...]  # the top-most paths left out by the exclude patterns


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class _Hashing:
    """A write-only file that hashes and counts what goes through it to the file below."""

    def __init__(self, below: _Sink) -> None:
        self.below = below
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.below.write(data)
        return len(data)

    def flush(self) -> None:
        self.below.flush()


def excluded(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, pat) for pat in patterns)


def walk(tree: Path, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Sorted image paths ("/etc", "/etc/passwd"...) below `tree`, and the top-most excluded ones."""
    kept: list[str] = []
    dropped: list[str] = []

    def visit(rel: str) -> Iterator[str]:
        with os.scandir(tree / rel.lstrip("/") if rel != "/" else tree) as it:
            names = sorted(e.name for e in it)
        for name in names:
            path = f"{rel.rstrip('/')}/{name}"
            if excluded(path, exclude):
                dropped.append(path)
                continue
            yield path
            full = tree / path.lstrip("/")
            if full.is_dir() and not full.is_symlink():
                yield from visit(path)

    kept.extend(visit("/"))
    return kept, dropped


def _tarinfo(tree: Path, path: str, epoch: int, links: dict[tuple[int, int], str]) -> tarfile.TarInfo | None:
    full = tree / path.lstrip("/")
    st = full.lstat()
    info = tarfile.TarInfo(path.lstrip("/"))
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = min(int(st.st_mtime), epoch)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(full)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
        else:
            if st.st_nlink > 1:
                links[key] = info.name
            info.type = tarfile.REGTYPE
            info.size = st.st_size
    else:
        return None  # device nodes, fifos, sockets
    return info


def write(tree: Path, out: Path, *, epoch: int, exclude: tuple[str, ...] = ()) -> Layer:
    """Write `tree` as a gzip-compressed layer tar to `out` (the caller renames it into place)."""
    paths, dropped = walk(tree, exclude)
    links: dict[tuple[int, int], str] = {}
    entries = 0
    with out.open("wb") as raw:
        blob = _Hashing(raw)
        # filename="" and mtime=0: the gzip header would otherwise carry the temp name and the time.
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            tar_stream = _Hashing(gz)
            with tarfile.open(fileobj=tar_stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path in paths:
                    info = _tarinfo(tree, path, epoch, links)
                    if info is None:
                        continue
                    entries += 1
                    if info.type == tarfile.REGTYPE:
                        with (tree / path.lstrip("/")).open("rb") as fh:
                            tar.addfile(info, fh)
                    else:
                        tar.addfile(info)
        raw.flush()
        os.fsync(raw.fileno())
    return Layer(
        path=out,
        diff_id=f"sha256:{tar_stream.sha.hexdigest()}",
        digest=f"sha256:{blob.sha.hexdigest()}",
        size=blob.size,
        tar_size=tar_stream.size,
        entries=entries,
        excluded=tuple(dropped),
    )
