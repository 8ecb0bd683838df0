"""The per-build ephemeral SSH key: private half only in the build directory (0600), never in the image.

RHEL 7 kickstart syntax has no `sshkey` command, so the public half goes in through a `%post` snippet
that the factory appends to the kickstart it serves (never to the file on disk).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from factory.host import tools

# Marks the factory's lines in authorized_keys so sealing can remove exactly them.
KEY_COMMENT = "image-factory-build-key"


@dataclass(frozen=True)
class BuildKey:
    private: Path
    public: str  # one authorized_keys line

    def exists(self) -> bool:
        return self.private.is_file()


def create(private: Path) -> BuildKey:
    """Make the key pair `private` + `private.pub` (ssh-keygen's names) unless it exists."""
    if not private.exists():
        # ssh-keygen writes the private key with mode 0600 itself.
        tools.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f", private], timeout=30
        )
        os.chmod(private, 0o600)
    return load(private)


def load(private: Path) -> BuildKey:
    public = _pub(private).read_text().strip()
    return BuildKey(private=private, public=public)


def _pub(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def post_snippet(key: BuildKey) -> str:
    """A %post section installing the build key for root; appended to the served kickstart."""
    return (
        "\n# Added by the image factory: ephemeral build key, removed again when the image is sealed.\n"
        "%post --erroronfail\n"
        "install -d -m 0700 /root/.ssh\n"
        f"echo '{key.public}' >> /root/.ssh/authorized_keys\n"
        "chmod 0600 /root/.ssh/authorized_keys\n"
        "# SELinux (EL): label the new files or sshd refuses the key.\n"
        "if command -v restorecon >/dev/null 2>&1; then restorecon -R /root/.ssh; fi\n"
        "%end\n"
    )


def remove(key: BuildKey) -> None:
    """Delete both halves of the build key from the build directory (after sealing)."""
    for p in (key.private, _pub(key.private)):
        p.unlink(missing_ok=True)
