"""Small ISO9660 images of named files, as the platforms write them (pycdlib: no mount, no root).

    write_iso(path, label, {"openstack/latest/meta_data.json": b"...", ...})

Nova and vSphere write their drives with Rock Ridge and Joliet (genisoimage -R -J), so a guest sees the long,
lower-case names (`meta_data.json`, `ovf-env.xml`) whichever extension its kernel reads; the plain ISO9660
names underneath are the upper-case d-character form. The file is written beside `path` and renamed into
place: never half an ISO.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pycdlib

from factory.errors import VerifyError

LABEL_MAX = 32  # ISO9660 volume identifier


def _iso_name(name: str, *, is_dir: bool) -> str:
    """ISO9660 level-3 name: d-characters (A-Z 0-9 _), at most 30, files with ";1"."""
    stem, dot, ext = name.rpartition(".") if not is_dir and "." in name else (name, "", "")
    clean = re.sub(r"[^A-Z0-9_]", "_", stem.upper())[:30]
    if is_dir:
        return clean
    return f"{clean}{dot}{re.sub(r'[^A-Z0-9_]', '_', ext.upper())[:3]};1" if dot else f"{clean};1"


def build_iso(label: str, files: Mapping[str, bytes]) -> bytes:
    """The bytes of an ISO holding `files` (POSIX relative paths) under volume label `label`."""
    if not label or len(label) > LABEL_MAX:
        raise VerifyError(f"ISO volume label {label!r}: give 1..{LABEL_MAX} characters")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=label, rock_ridge="1.09", joliet=3)
    made: set[PurePosixPath] = set()
    try:
        for rel in sorted(files):
            path = PurePosixPath(rel)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise VerifyError(f"{rel!r}: an ISO member must be a relative path inside the image")
            for depth in range(1, len(path.parts)):
                folder = PurePosixPath(*path.parts[:depth])
                if folder not in made:
                    iso.add_directory(
                        "/" + "/".join(_iso_name(p, is_dir=True) for p in folder.parts),
                        rr_name=folder.name,
                        joliet_path="/" + str(folder),
                    )
                    made.add(folder)
            iso_path = "/".join(
                [*(_iso_name(p, is_dir=True) for p in path.parts[:-1]), _iso_name(path.name, is_dir=False)]
            )
            data = files[rel]
            iso.add_fp(
                io.BytesIO(data), len(data), "/" + iso_path, rr_name=path.name, joliet_path="/" + str(path)
            )
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def write_iso(path: Path, label: str, files: Mapping[str, bytes]) -> Path:
    data = build_iso(label, files)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_iso(path: Path) -> tuple[str, dict[str, bytes]]:
    """(volume label, {rock ridge path: bytes}) of an ISO: what a Linux guest mounting it would see."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().rstrip()
        found: dict[str, bytes] = {}
        for root, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                rr = f"{root.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=rr)
                found[rr.lstrip("/")] = buf.getvalue()
        return label, found
    finally:
        iso.close()
