"""How verify logs in to an image the build key no longer opens: a sealed, exported or older image.


        verify(spec, image, build, key=login.key, prepare_disk=login.prepare_disk)

With the build key still in the build directory (an installed, unsealed image), that key logs in and
nothing is added anywhere. Without it (sealing deleted it and removed its line from the image), a throw-away
ed25519 pair is made in a private temporary folder, and its public half is appended to root's
`authorized_keys` **in verify's throw-away qcow2 overlay only**, offline, before the overlay boots: the image
file itself is opened by nobody for writing (verify compares its sha256 before and after). The private half
is deleted when the block ends.

Writing into a qcow2 offline needs a raw view of its filesystems (`qemu-nbd --connect` needs root and the
nbd kernel module). Two ways, picked by the root filesystem:
- **ext2/3/4** (the testbed): a sparse raw copy of the overlay (`qemu-img convert`), debugfs writes the
  key into the copy, and only the 1 MiB pieces that changed are written back into the overlay with
  `qemu-io`; `qemu-img compare` then proves the overlay reads exactly as the edited copy. A few seconds.
- **anything else** (xfs and LVM on EL 7): libguestfs (`guestfish -a overlay -i`) with the appliance kernel
  from `factory.host.supermin`; about 85 s under TCG here (its appliance boots).
The line is appended (never replacing what the image holds), `/root/.ssh` is created 0700 and the file
made 0600, both owned by root, and labelled with the SELinux type sshd needs on EL (`ssh_home_t`; debugfs
only where the image has /etc/selinux/config, guestfish always, which a filesystem without SELinux ignores).

Only root: the acceptance suite logs in as root (`User root` in its ssh_config). A cloud user does not exist
offline in a cloud-init image (cloud-init creates it at first boot); such images get their key through a
boot profile's metadata instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from factory.core import offline
from factory.core.offline import DEBUGFS_TIMEOUT_S, GUESTFISH_TIMEOUT_S, guestfish_env
from factory.core.record import BuildDir
from factory.errors import FactoryError, VerifyError
from factory.host import tools
from factory.spec import Accel
from factory.vm import accel as accel_mod
from factory.vm import sshkey
from factory.vm.sshkey import BuildKey

# Marks the throw-away key's line, so a test (or a person) can tell it from any key the image carries.
ACCESS_COMMENT = "image-factory-verify-access"
# A verify that had to add its own key is not the verify the promotion gate reads (that one is bound to
# the installed disk the seal stage starts from): it is recorded under its own stage name.
REVERIFY_STAGE = "reverify"
SSH_DIR = "/root/.ssh"
AUTHORIZED_KEYS = f"{SSH_DIR}/authorized_keys"
SSH_HOME_CONTEXT = "system_u:object_r:ssh_home_t:s0"
CHUNK = 1 << 20  # compare and copy the edited raw copy in pieces of 1 MiB


@dataclass(frozen=True)
class Login:
    key: BuildKey
    # None: the build key logs in as it is; else called with the overlay before it boots.
    prepare_disk: Callable[[Path], None] | None

    @property
    def throwaway(self) -> bool:
        return self.prepare_disk is not None

    @property
    def stage(self) -> str:
        return REVERIFY_STAGE if self.throwaway else "verify"


def _quote(text: str) -> str:
    """A guestfish double-quoted argument (guestfish reads C-style escapes inside double quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def guestfish_script(public_key: str) -> str:
    """Commands that append `public_key` to root's authorized_keys of the mounted guest (`-i`)."""
    if "\n" in public_key.strip() or not public_key.strip():
        raise VerifyError("the access key must be one authorized_keys line")
    context = _quote(SSH_HOME_CONTEXT)
    lines = [
        f"mkdir-p {SSH_DIR}",
        f"chmod 0700 {SSH_DIR}",
        f"chown 0 0 {SSH_DIR}",
        # A leading newline: an existing file without a final newline must not swallow the key.
        f"write-append {AUTHORIZED_KEYS} {_quote(chr(10) + public_key.strip() + chr(10))}",
        f"chmod 0600 {AUTHORIZED_KEYS}",
        f"chown 0 0 {AUTHORIZED_KEYS}",
        # `-`: a filesystem without xattr support must not stop the login (there is no SELinux there).
        f"-setxattr security.selinux {context} {len(SSH_HOME_CONTEXT)} {SSH_DIR}",
        f"-setxattr security.selinux {context} {len(SSH_HOME_CONTEXT)} {AUTHORIZED_KEYS}",
        "echo ::done",
        "",
    ]
    return "\n".join(lines)


def _data_chunks(raw: Path) -> dict[int, bytes]:
    """Digest of every CHUNK-sized piece of `raw` that holds data (holes skipped with SEEK_DATA)."""
    digests: dict[int, bytes] = {}
    with raw.open("rb") as f:
        fd, size, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            for index in range(start // CHUNK, (end - 1) // CHUNK + 1):
                if index not in digests:
                    f.seek(index * CHUNK)
                    digests[index] = hashlib.blake2b(f.read(CHUNK), digest_size=16).digest()
            pos = end
    return digests


def _debugfs(device: str, request: str) -> tuple[bytes, str]:
    proc = tools.run(["debugfs", "-R", request, device], timeout=DEBUGFS_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise VerifyError(f"debugfs failed on {device}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout, proc.stderr.decode(errors="replace")


def _exists(device: str, path: str) -> bool:
    _, err = _debugfs(device, f"stat {path}")
    return "File not found" not in err and "not found by ext2_lookup" not in err


def debugfs_requests(host_file: Path, *, has_dir: bool, has_file: bool, selinux: bool) -> list[str]:
    """debugfs commands putting `host_file` at root's authorized_keys with the modes sshd insists on."""
    requests = [] if has_dir else [f"mkdir {SSH_DIR}"]
    if has_file:
        requests.append(f"rm {AUTHORIZED_KEYS}")
    requests.append(f"write {host_file} {AUTHORIZED_KEYS}")
    for path, mode in ((SSH_DIR, "040700"), (AUTHORIZED_KEYS, "0100600")):
        requests += [f"sif {path} mode {mode}", f"sif {path} uid 0", f"sif {path} gid 0"]
        if selinux:
            requests.append(f"ea_set {path} security.selinux {SSH_HOME_CONTEXT}")
    return requests


def _authorize_ext(disk: Path, public_key: str) -> bool:
    """The fast way for an ext2/3/4 root: debugfs on a raw copy, then only the changed pieces go into the
    overlay (qemu-io), checked with `qemu-img compare`. False when the root is not ext (use guestfish)."""
    with offline.raw_copy(disk, disk.parent) as raw:
        root = offline.root_partition(raw)
        if root is None:
            return False
        device = f"{raw}?offset={root.offset}"
        before = _data_chunks(raw)
        has_dir, has_file = _exists(device, SSH_DIR), _exists(device, AUTHORIZED_KEYS)
        old = _debugfs(device, f"cat {AUTHORIZED_KEYS}")[0] if has_file else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        wanted = old + public_key.strip().encode() + b"\n"
        keys = raw.with_name("authorized_keys")
        keys.write_bytes(wanted)
        script = raw.with_name("debugfs.cmd")
        selinux = _exists(device, "/etc/selinux/config")
        script.write_text(
            "\n".join(debugfs_requests(keys, has_dir=has_dir, has_file=has_file, selinux=selinux))
        )
        proc = tools.run(["debugfs", "-w", "-f", script, device], timeout=DEBUGFS_TIMEOUT_S, check=False)
        # debugfs exits 0 even when a request fails: read the result back instead of trusting it.
        got = _debugfs(device, f"cat {AUTHORIZED_KEYS}")[0]
        if proc.returncode != 0 or got != wanted:
            err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise VerifyError(f"{disk}: debugfs could not write {AUTHORIZED_KEYS}: {' / '.join(err)}")
        after = _data_chunks(raw)
        changed = sorted(i for i in before.keys() | after.keys() if before.get(i) != after.get(i))
        commands: list[str] = []
        with raw.open("rb") as f:
            for index in changed:
                piece = raw.with_name(f"chunk-{index}")
                f.seek(index * CHUNK)
                piece.write_bytes(f.read(CHUNK))
                length = piece.stat().st_size
                commands += ["-c", f"write -q -s {piece} {index * CHUNK} {length}"]
        if commands:
            tools.run(["qemu-io", "-f", "qcow2", *commands, disk], timeout=300)
        # The overlay must now read exactly as the edited copy: proof that nothing else changed.
        tools.run(["qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", disk, raw], timeout=1800)
    return True


def authorize_offline(disk: Path, public_key: str, accel: str) -> None:
    """Append `public_key` to root's authorized_keys inside `disk` (a throw-away overlay), offline."""
    if "\n" in public_key.strip() or not public_key.strip():
        raise VerifyError("the access key must be one authorized_keys line")
    if not _authorize_ext(disk, public_key):
        authorize_guestfish(disk, public_key, accel)


def authorize_guestfish(disk: Path, public_key: str, accel: str) -> None:
    """The libguestfs way (any root filesystem libguestfs inspection finds)."""
    try:
        proc = tools.run(
            ["guestfish", "-a", disk, "-i"],
            input=guestfish_script(public_key).encode(),
            env=guestfish_env(accel),
            timeout=GUESTFISH_TIMEOUT_S,
        )
    except FactoryError as exc:
        raise VerifyError(f"{disk}: could not add the throw-away access key offline: {exc.message}") from None
    if "::done" not in proc.stdout.decode(errors="replace"):
        raise VerifyError(f"{disk}: guestfish stopped before the access key was written")


@contextlib.contextmanager
def throwaway_key() -> Iterator[BuildKey]:
    """A fresh ed25519 pair in a private temporary folder (0700), deleted when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix="factory-access-"))
    try:
        private = folder / "access-key"
        tools.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", ACCESS_COMMENT, "-f", private], timeout=30
        )
        yield BuildKey(private=private, public=private.with_name("access-key.pub").read_text().strip())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def login(build: BuildDir, accel: Accel) -> Iterator[Login]:
    """The key verify logs in with: the build key when the build still has it, else a throw-away one.

    `accel` (the spec's) is resolved only when the offline write needs it (libguestfs's appliance)."""
    if build.key.is_file() and build.key_pub.is_file():
        yield Login(key=sshkey.load(build.key), prepare_disk=None)
        return
    with throwaway_key() as fresh:

        def prepare(disk: Path) -> None:
            authorize_offline(disk, fresh.public, accel_mod.resolve(accel))

        yield Login(key=fresh, prepare_disk=prepare)
