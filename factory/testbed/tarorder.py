"""Reorder the base system tarball package by package, so the installer's progress follows the unpack.

    reorder(src, dest, packages) -> [(package, marker), ...]

mmdebstrap writes the root filesystem in directory order. Rewritten so that each package's files come
together (in `packages` order, files no package owns last), `tar -xv` prints a package's first path (its
*marker*) when its unpacking begins: the installer prints `Installing <pkg> (N/M)` at that moment, the
way anaconda paces its lines with the real work. Ownership comes from dpkg's own file lists
(var/lib/dpkg/info/<pkg>[:arch].list) inside the tarball.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# bookworm's merged /usr: dpkg lists /bin/dash, the tarball holds ./usr/bin/dash behind the ./bin symlink.
_MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Member:
    """What ordering needs of one tar member: its path (as `/usr/bin/dash`), and its hard-link target."""

    path: str
    link_target: str | None = None


def _norm(name: str) -> str:
    """A tar member name (`./usr/bin/dash`, `.`) as dpkg lists paths (`/usr/bin/dash`, `/`)."""
    return "/" + name.removeprefix("./").removeprefix(".").strip("/")


def _owned(path: str, present: Container[str]) -> str | None:
    """The member path a dpkg-listed path names, through the merged-/usr symlinks; None if absent."""
    path = "/" if path == "/." else path.rstrip("/") or "/"
    if path in present:
        return path
    first = path.split("/", 2)[1]
    if first in _MERGED and "/usr" + path in present:
        return "/usr" + path
    return None


def plan(
    members: Sequence[Member], lists: Mapping[str, Sequence[str]], packages: Sequence[str]
) -> tuple[list[int], list[int | None]]:
    """The unpack order (member indices) and, per package, the index of its first member (or None).

    A member belongs to the first package (in `packages` order) whose list names it; unowned members
    (generated files: /etc/passwd, host keys, dpkg's database) go last. A directory moves up to the
    earliest package of anything beneath it, so parents always precede their contents; a hard link never
    precedes its target. Within one package the original order is kept.
    """
    present = {m.path: i for i, m in enumerate(members)}
    last = len(packages)
    key = [last] * len(members)
    for rank, package in enumerate(packages):
        for listed in lists.get(package, ()):
            path = _owned(listed, present)
            if path is not None and key[present[path]] == last:
                key[present[path]] = rank
    # Parents first: every ancestor directory takes the smallest key beneath it.
    for i, m in enumerate(members):
        parent = m.path
        while parent != "/":
            parent = parent.rsplit("/", 1)[0] or "/"
            j = present.get(parent)
            if j is not None and key[j] > key[i]:
                key[j] = key[i]
    # A hard link after its target (same key: the original order already has the target first).
    for i, m in enumerate(members):
        if m.link_target is not None and m.link_target in present:
            key[i] = max(key[i], key[present[m.link_target]])
    order = sorted(range(len(members)), key=lambda i: (key[i], i))
    first: list[int | None] = [None] * len(packages)
    for i in order:
        if key[i] < last and first[key[i]] is None:
            first[key[i]] = i
    return order, first


def reorder(src: Path, dest: Path, packages: Sequence[str]) -> list[tuple[str, str]]:
    """Rewrite the gzip tarball `src` as `dest` in package order; return (package, marker) pairs.

    The marker is the member name exactly as `tar -v` prints it (`./usr/share/adduser/`), or "" for a
    package with no file of its own (it is counted when the next package's files begin).
    """
    with tarfile.open(src, "r:gz") as tar:
        infos: list[tarfile.TarInfo] = []
        data: dict[int, bytes] = {}
        lists: dict[str, list[str]] = {}
        for info in tar:
            if info.isreg():
                f = tar.extractfile(info)
                assert f is not None  # a regular member always has data
                data[len(infos)] = f.read()
                name = info.name.removeprefix("./")
                if name.startswith("var/lib/dpkg/info/") and name.endswith(".list"):
                    package = name.rsplit("/", 1)[1].removesuffix(".list").split(":", 1)[0]
                    lists[package] = data[len(infos)].decode(errors="replace").splitlines()
            infos.append(info)
    members = [Member(_norm(i.name), _norm(i.linkname) if i.islnk() else None) for i in infos]
    order, first = plan(members, lists, packages)
    # Level 6: level 9 takes seconds longer here and saves little; the guest's gunzip speed is the same.
    with tarfile.open(dest, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as out:
        for i in order:
            out.addfile(infos[i], io.BytesIO(data[i]) if i in data else None)
    return [
        (package, _printed(infos[i]) if i is not None else "")
        for package, i in zip(packages, first, strict=True)
    ]


def _printed(info: tarfile.TarInfo) -> str:
    """The name `tar -v` prints: tarfile strips a directory's trailing slash and writes it back."""
    return info.name + "/" if info.isdir() else info.name
