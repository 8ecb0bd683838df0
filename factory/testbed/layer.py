"""The cloud layer of the testbed medium: what a root filesystem with cloud-init adds to the base one.

    write(base, full, dest) -> removed paths

Two mmdebstrap runs make the base system and the same system plus cloud-init (and what it needs:
python3, growpart, sudo). The layer is the second minus the first: every member that is new or differs
(type, mode, owner, link, content), as a gzip tarball the installer unpacks over the base when the
kickstart's %packages asks for cloud-init, the way a package group only costs the installs that name it.
Files the base has and the full system lacks are returned, for the installer to delete after unpacking.
Modification times are not compared: dpkg keeps a package's own, and a regenerated file with the same
bytes (ld.so.cache, a group file) is the same file.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

Fingerprint = tuple[str, int, int, int, str, str]


def _fingerprint(info: tarfile.TarInfo, data: bytes | None) -> Fingerprint:
    content = hashlib.sha256(data).hexdigest() if data is not None else ""
    return (info.type.decode(), info.mode, info.uid, info.gid, info.linkname, content)


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes | None:
    if not info.isreg():
        return None
    f = tar.extractfile(info)
    assert f is not None  # a regular member always has data
    return f.read()


def write(base: Path, full: Path, dest: Path) -> list[str]:
    """Write the layer (full minus base) to `dest`; return the member names only base has."""
    with tarfile.open(base, "r:gz") as tar:
        known = {info.name: _fingerprint(info, _read(tar, info)) for info in tar}
    seen: set[str] = set()
    with tarfile.open(full, "r:gz") as src, tarfile.open(dest, "w:gz", compresslevel=1) as out:
        for info in src:
            data = _read(src, info)
            seen.add(info.name)
            if known.get(info.name) == _fingerprint(info, data):
                continue
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return sorted(set(known) - seen)
