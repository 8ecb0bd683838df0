"""How verify logs in to an image the build key no longer opens: a sealed, exported or older image.


        verify(spec, image, build, key=login.key, prepare_disk=login.prepare_disk)

With the build key still in the build directory (an installed, unsealed image), that key logs in and
nothing is added anywhere. Without it (sealing deleted it and removed its line from the image), a throw-away
ed25519 pair is made in a private temporary folder, and its public half is appended to root's
`authorized_keys` **in verify's throw-away qcow2 overlay only**, offline, before the overlay boots: the image
file itself is opened by nobody for writing (verify compares its sha256 before and after). The private half
is deleted when the block ends.

Writing into a qcow2 offline needs a raw view of its filesystems: `qemu-nbd --connect` needs root and the
nbd kernel module, and debugfs only writes raw filesystems, so the overlay is opened with libguestfs
(`guestfish -a overlay -i`, which finds the root filesystem of any distribution, ext4 or xfs on LVM), with
the appliance kernel from `factory.host.supermin`. The line is appended (never replacing what the image
holds), `/root/.ssh` is created 0700 and the file made 0600, both owned by root, and given the SELinux type
sshd needs on EL (`ssh_home_t`; on images without SELinux the label is ignored).

Only root: the acceptance suite logs in as root (`User root` in its ssh_config). A cloud user does not exist
offline in a cloud-init image (cloud-init creates it at first boot); such images get their key through a
boot profile's metadata instead.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from factory.core.offline import GUESTFISH_TIMEOUT_S, guestfish_env
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


def authorize_offline(disk: Path, public_key: str, accel: str) -> None:
    """Append `public_key` to root's authorized_keys inside `disk` (a throw-away overlay), offline."""
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
    try:
        key = sshkey.load(build.path)
    except FileNotFoundError:
        key = None
    if key is not None and key.exists():
        yield Login(key=key, prepare_disk=None)
        return
    with throwaway_key() as fresh:

        def prepare(disk: Path) -> None:
            authorize_offline(disk, fresh.public, accel_mod.resolve(accel))

        yield Login(key=fresh, prepare_disk=prepare)
