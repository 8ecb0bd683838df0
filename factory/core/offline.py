"""Read files of a disk image without booting it: what seal's re-check (and doctor's probe) need.

    snapshot(image, dirs=[...], files=[...], accel=...) -> Snapshot

Two readers, picked by what the image holds:
- **ext2/3/4 root** (the testbed): e2fsprogs' `debugfs` reads the filesystem straight from a raw copy of the
  disk (`image?offset=N`), no appliance, no root, well under a second. The partition table (MBR or GPT) is
  parsed here to find the offsets.
- **anything else** (xfs and LVM on EL 7): libguestfs (`guestfish --ro -i`), which boots a small appliance;
  `factory.host.supermin` gives it a kernel so it also works on hosts with nothing in /boot.
"""

from __future__ import annotations

import contextlib
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from factory.errors import ToolError
from factory.host import supermin, tools

SECTOR = 512
GUESTFISH_TIMEOUT_S = 600.0
DEBUGFS_TIMEOUT_S = 60.0
EXT_MAGIC_OFFSET = 1080  # s_magic in the ext superblock, which starts 1024 bytes into the filesystem
EXT_MAGIC = b"\x53\xef"
XFS_MAGIC = b"XFSB"
GPT_SIGNATURE = b"EFI PART"
MBR_EXTENDED = {0x05, 0x0F, 0x85}


@dataclass(frozen=True)
class Partition:
    offset: int  # bytes from the start of the disk
    size: int
    fstype: str  # "ext", "xfs" or "unknown"


@dataclass(frozen=True)
class Snapshot:
    """What was read. A missing directory or file maps to None."""

    reader: str  # "debugfs" or "guestfish"
    listings: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    contents: dict[str, bytes | None] = field(default_factory=dict)


def _fstype(head: bytes) -> str:
    if head[EXT_MAGIC_OFFSET : EXT_MAGIC_OFFSET + 2] == EXT_MAGIC:
        return "ext"
    if head[:4] == XFS_MAGIC:
        return "xfs"
    return "unknown"


def partitions(raw: Path) -> list[Partition]:
    """Primary MBR or GPT partitions of a raw disk, each with its filesystem type by magic number.

    A disk with no partition table but a filesystem at offset 0 is one partition."""
    with raw.open("rb") as f:
        size = f.seek(0, 2)

        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        found: list[tuple[int, int]] = []
        mbr = read(0, SECTOR)
        gpt = read(SECTOR, SECTOR)
        if gpt[:8] == GPT_SIGNATURE:
            entries_lba, count, entry_size = struct.unpack_from("<QII", gpt, 72)
            table = read(entries_lba * SECTOR, count * entry_size)
            for i in range(count):
                entry = table[i * entry_size : (i + 1) * entry_size]
                first, last = struct.unpack_from("<QQ", entry, 32)
                if entry[:16] != b"\0" * 16 and last >= first:
                    found.append((first * SECTOR, (last - first + 1) * SECTOR))
        elif mbr[510:512] == b"\x55\xaa" and _fstype(read(0, 2048)) == "unknown":
            for i in range(4):
                ptype = mbr[446 + 16 * i + 4]
                start, sectors = struct.unpack_from("<II", mbr, 446 + 16 * i + 8)
                if ptype and ptype not in MBR_EXTENDED and sectors:
                    found.append((start * SECTOR, sectors * SECTOR))
        else:
            found.append((0, size))
        return [Partition(off, length, _fstype(read(off, 2048))) for off, length in found if off < size]


@contextlib.contextmanager
def raw_copy(image: Path, workdir: Path | None = None) -> Iterator[Path]:
    """A sparse raw copy of `image` (any format qemu-img reads), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="factory-offline-", dir=workdir) as tmp:
        raw = Path(tmp) / "disk.raw"
        tools.run(["qemu-img", "convert", "-O", "raw", image, raw], timeout=1800)
        yield raw


def _debugfs(device: str, request: str) -> tuple[str, str]:
    proc = tools.run(["debugfs", "-R", request, device], timeout=DEBUGFS_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise ToolError(f"debugfs could not read {device}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _not_found(stderr: str) -> bool:
    return "File not found" in stderr or "not found by ext2_lookup" in stderr


def _debugfs_snapshot(device: str, dirs: Sequence[str], files: Sequence[str]) -> Snapshot:
    snap = Snapshot(reader="debugfs")
    for d in dirs:
        out, err = _debugfs(device, f"ls -p {d}")
        if _not_found(err):
            snap.listings[d] = None
            continue
        # `ls -p` lines: /inode/mode/uid/gid/name/size/ (names cannot hold "/").
        names = [ln.split("/")[5] for ln in out.splitlines() if ln.count("/") >= 6]
        snap.listings[d] = tuple(n for n in names if n not in (".", ".."))
    for path in files:
        out, err = _debugfs(device, f"stat {path}")
        if _not_found(err):
            snap.contents[path] = None
            continue
        data = tools.run(["debugfs", "-R", f"cat {path}", device], timeout=DEBUGFS_TIMEOUT_S).stdout
        snap.contents[path] = data
    return snap


def root_partition(raw: Path) -> Partition | None:
    """The ext partition holding /etc (a separate /boot is skipped), or None when there is none."""
    for part in partitions(raw):
        if part.fstype != "ext":
            continue
        _, err = _debugfs(f"{raw}?offset={part.offset}", "stat /etc")
        if not _not_found(err):
            return part
    return None


# guestfish prints each answer after a marker line; `-` lets a command fail (a missing file) without
# ending the script.
def guestfish_script(dirs: Sequence[str], files: Sequence[str]) -> str:
    lines = []
    for d in dirs:
        lines += [f"echo ::dir {d}", f"-ls {d}"]
    for path in files:
        lines += [f"echo ::isfile {path}", f"-is-file {path}", f"echo ::file {path}", f"-cat {path}"]
    return "\n".join([*lines, "echo ::end", ""])


def parse_guestfish(output: str, dirs: Sequence[str], files: Sequence[str]) -> Snapshot:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("::"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "end" not in sections:
        raise ToolError("guestfish's output was cut short (no end marker): the offline read did not complete")
    snap = Snapshot(reader="guestfish")
    for d in dirs:
        entries = [ln.strip() for ln in sections.get(f"dir {d}", []) if ln.strip()]
        snap.listings[d] = tuple(entries) if f"dir {d}" in sections and entries else None
    for path in files:
        present = [ln.strip() for ln in sections.get(f"isfile {path}", [])] == ["true"]
        body = sections.get(f"file {path}", [])
        snap.contents[path] = "\n".join(body).encode() + (b"\n" if body else b"") if present else None
    return snap


def guestfish_env(accel: str) -> dict[str, str]:
    env = {"LIBGUESTFS_BACKEND": "direct", **supermin.guestfs_env()}
    if accel == "tcg":
        # libguestfs tries KVM whenever /dev/kvm exists; where KVM does not really work its appliance aborts.
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def guestfish_snapshot(
    image: Path, dirs: Sequence[str], files: Sequence[str], accel: str, *, device: str | None = None
) -> Snapshot:
    """Read with libguestfs: the OS's filesystems as its inspection finds them (`-i`), or one `device`
    mounted as / (a bare filesystem image has no OS to inspect)."""
    script = guestfish_script(dirs, files)
    argv: list[str | Path] = ["guestfish", "--ro", "-a", image]
    if device is None:
        argv.append("-i")
    else:
        script = f"run\nmount {device} /\n{script}"
    proc = tools.run(
        argv,
        input=script.encode(),
        env=guestfish_env(accel),
        timeout=GUESTFISH_TIMEOUT_S,
    )
    return parse_guestfish(proc.stdout.decode(errors="replace"), dirs, files)


def snapshot(
    image: Path, *, dirs: Sequence[str] = (), files: Sequence[str] = (), accel: str = "tcg"
) -> Snapshot:
    """Read `dirs` (names in them) and `files` (their bytes) from the root filesystem of `image`."""
    with raw_copy(image, image.parent) as raw:
        root = root_partition(raw)
        if root is not None:
            return _debugfs_snapshot(f"{raw}?offset={root.offset}", dirs, files)
    return guestfish_snapshot(image, dirs, files, accel)
