"""Read the sealed disk's root filesystem offline, without mounting it and without booting it.

    extract(image, dest, work) -> RootFs

The disk (qcow2) is converted to a sparse raw file, its partition table read and each partition's superblock
magic looked at (`offline.partitions`, as seal's re-check does). One ext2/3/4 filesystem (the testbed) is
read with e2fsprogs' `debugfs`: `rdump` writes the files, then one batch of `ls -p` gives every entry's
owner and mode, applied afterwards because rdump's chown after chmod drops setuid/setgid bits (passwd, su
and sudo would lose them). rdump skips device nodes, sockets and fifos, which a container image must not
carry anyway, and writes hard links as separate files: the listing's inode numbers put them back as links.
Extended attributes (file capabilities) are not read.

Anything else (xfs, LVM, a separate /boot: EL 7) has no good offline userspace reader: it goes through
libguestfs (`virt-tar-out`, which inspects the guest and mounts its filesystems in its own appliance). That
needs a kernel in /boot on the host (see `libguestfs-test-tool`); without one the error says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from factory.core import offline
from factory.errors import ExportError, ToolError
from factory.host import tools

CONVERT_TIMEOUT_S = 3600
DEBUGFS_TIMEOUT_S = 3600


@dataclass(frozen=True)
class RootFs:
    path: Path
    reader: str  # debugfs or virt-tar-out
    fstype: str


def extract(image: Path, dest: Path, work: Path, *, accel: str = "tcg") -> RootFs:
    """Write the root filesystem of `image` (qcow2 or raw) into the empty folder `dest`.

    `accel` (kvm or tcg, as resolved for the build) is for libguestfs's appliance on the non-ext path.
    """
    if os.geteuid() != 0:
        # Owners and setuid bits are the image's: only root can give files to other users.
        raise ExportError("the OCI export writes files with the image's owners: run it as root")
    dest.mkdir(parents=True, exist_ok=True)
    raw = work / "rootfs-source.raw"
    try:
        tools.run(["qemu-img", "convert", "-O", "raw", image, raw], timeout=CONVERT_TIMEOUT_S)
        parts = offline.partitions(raw)
        filesystems = [p for p in parts if p.fstype != "unknown"]
        if len(filesystems) == 1 and filesystems[0].fstype == "ext":
            _debugfs_extract(raw, filesystems[0].offset, dest)
            return RootFs(path=dest, reader="debugfs", fstype="ext4")
    finally:
        raw.unlink(missing_ok=True)
    kinds = ", ".join(p.fstype for p in parts) or "none"
    _libguestfs_extract(image, dest, work, kinds, accel)
    return RootFs(path=dest, reader="virt-tar-out", fstype=kinds)


def _debugfs_extract(raw: Path, offset: int, dest: Path) -> None:
    device = f"{raw}?offset={offset}"
    # rdump writes "<dest>/<name of the dumped dir>": dump each top-level entry so dest itself is the root.
    top = _listing(device, ["/"])["/"]
    commands = [f"rdump {_quote('/' + name)} {_quote(str(dest))}" for name in sorted(top)]
    if commands:
        _debugfs(device, commands)
    _apply_owners(device, dest, top)


def _apply_owners(device: str, dest: Path, top: dict[str, tuple[int, int, int, int]]) -> None:
    """Set every entry's owner, then its mode (chown clears setuid): from debugfs, not from rdump."""
    entries: dict[str, tuple[int, int, int, int]] = {"/" + n: v for n, v in top.items()}
    pending = [p for p, (mode, *_) in entries.items() if _is_dir(mode)]
    while pending:
        listing = _listing(device, pending)
        pending = []
        for parent, children in listing.items():
            for name, value in children.items():
                path = parent.rstrip("/") + "/" + name
                entries[path] = value
                if _is_dir(value[0]):
                    pending.append(path)
    first_path: dict[int, Path] = {}
    # Children before parents: a read-only directory mode must not stop the entries inside it.
    for path in sorted(entries, key=lambda p: (-p.count("/"), p)):
        mode, uid, gid, inode = entries[path]
        target = dest / path.lstrip("/")
        if not os.path.lexists(target):
            continue  # device nodes, sockets and fifos: rdump does not write them, on purpose
        if _is_file(mode):
            if inode in first_path:
                target.unlink()
                os.link(first_path[inode], target)
                continue
            first_path[inode] = target
        os.lchown(target, uid, gid)
        if not _is_link(mode):
            os.chmod(target, mode & 0o7777)


def _listing(device: str, dirs: list[str]) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    """`ls -p` of each folder in one debugfs run: {dir: {name: (mode, uid, gid, inode)}}, no . and .."""
    out = _debugfs(device, [f"ls -p {_quote(d)}" for d in dirs])
    result: dict[str, dict[str, tuple[int, int, int, int]]] = {}
    current: dict[str, tuple[int, int, int, int]] | None = None
    index = 0
    for line in out.splitlines():
        if line.startswith("debugfs: "):
            current = result.setdefault(dirs[index], {})
            index += 1
            continue
        if not line.startswith("/") or current is None:
            continue
        # /inode/mode/uid/gid/name/size/ (names cannot hold "/"; a newline in a name would break this)
        fields = line.split("/")
        if len(fields) < 7:
            raise ExportError(f"debugfs: unexpected listing line {line!r}")
        name = "/".join(fields[5:-2])
        if name in (".", ".."):
            continue
        current[name] = (int(fields[2], 8), int(fields[3]), int(fields[4]), int(fields[1]))
    if index != len(dirs):
        raise ExportError(f"debugfs listed {index} of {len(dirs)} folders")
    return result


def _debugfs(device: str, commands: list[str]) -> str:
    """Run debugfs commands (read-only) from a command file; its errors go to stderr, which is checked."""
    proc = tools.run(
        ["debugfs", "-f", "-", device], input="\n".join(commands).encode() + b"\n", timeout=DEBUGFS_TIMEOUT_S
    )
    errors = [
        ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln and not ln.startswith("debugfs ")
    ]
    if errors:
        raise ExportError(f"debugfs could not read the root filesystem: {errors[0]}")
    return proc.stdout.decode(errors="surrogateescape")


def _quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise ExportError(f"{path!r}: a file name debugfs cannot be asked about")
    return f'"{path}"'


def _is_dir(mode: int) -> bool:
    return mode & 0o170000 == 0o040000


def _is_file(mode: int) -> bool:
    return mode & 0o170000 == 0o100000


def _is_link(mode: int) -> bool:
    return mode & 0o170000 == 0o120000


def _libguestfs_extract(image: Path, dest: Path, work: Path, kinds: str, accel: str) -> None:
    tar = work / "rootfs-source.tar"
    env = {"LIBGUESTFS_BACKEND": "direct"}
    if accel == "tcg":
        # libguestfs tries KVM whenever /dev/kvm exists; where KVM does not really work its appliance hangs.
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    try:
        tools.run(["virt-tar-out", "--ro", "-a", image, "/", tar], timeout=CONVERT_TIMEOUT_S, env=env)
        tools.run(
            ["tar", "-x", "--numeric-owner", "-p", "--xattrs", "-f", tar, "-C", dest],
            timeout=CONVERT_TIMEOUT_S,
        )
    except ToolError as exc:
        raise ToolError(
            f"the disk's filesystems ({kinds}) are not one ext filesystem: reading them offline needs "
            f"libguestfs (virt-tar-out), which failed: {exc.message} (check the host with "
            "`libguestfs-test-tool`; it needs a kernel in /boot)"
        ) from None
    finally:
        tar.unlink(missing_ok=True)
