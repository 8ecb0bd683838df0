"""A tiny newc cpio writer: the initramfs is built without root and without host cpio quirks.

Writing the archive ourselves lets it carry /dev/console (a character device) even when the build
runs unprivileged, and keeps it byte-for-byte reproducible (fixed mtimes and owners).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member: `name` relative (no leading /), `mode` includes the file type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(ino: int, entry: Entry, namesize: int) -> bytes:
    fields = (
        ino,
        entry.mode,
        0,  # uid: root
        0,  # gid: root
        2 if stat.S_ISDIR(entry.mode) else 1,
        0,  # mtime: fixed for reproducible output
        len(entry.data),
        0,
        0,
        entry.rdev[0],
        entry.rdev[1],
        namesize,
        0,
    )
    return b"070701" + b"".join(f"{f:08X}".encode() for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def archive(entries: list[Entry]) -> bytes:
    """The newc archive of `entries` in the given order, with its trailer."""
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        name = entry.name.encode() + b"\0"
        head = _header(ino if entry.name != _TRAILER else 0, entry, len(name))
        out += head + name + _pad(len(head) + len(name))
        out += entry.data + _pad(len(entry.data))
    return bytes(out)


def tree_entries(root: Path) -> list[Entry]:
    """Entries for every file, directory and symlink under `root`, parents first, sorted."""
    entries: list[Entry] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, stat.S_IFLNK | 0o777, str(path.readlink()).encode()))
        elif stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, stat.S_IFDIR | 0o755))
        elif stat.S_ISREG(st.st_mode):
            entries.append(Entry(rel, stat.S_IFREG | (st.st_mode & 0o777), path.read_bytes()))
    return entries
