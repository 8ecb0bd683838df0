"""Host dependencies: which tools a build needs are missing, and (as root, when asked) installing them.

The package names come from `factory.host.tools.PACKAGES` (tool -> (Debian/Ubuntu package, Fedora/RHEL
package)).
A name starting with '/' is a file that must exist (e.g. isolinux.bin), anything else a program on PATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.errors import ToolError
from factory.host import tools

Family = Literal["debian", "fedora"]
OS_RELEASE = Path("/etc/os-release")
INSTALL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Missing:
    tool: str
    deb: str
    rpm: str


def is_present(tool: str) -> bool:
    return Path(tool).exists() if tool.startswith("/") else shutil.which(tool) is not None


def check(required: Iterable[str]) -> list[Missing]:
    """The tools in `required` that this host lacks, with the packages that provide them (in order, once)."""
    missing = []
    for tool in dict.fromkeys(required):
        if not is_present(tool):
            deb, rpm = tools.PACKAGES.get(tool, (tool, tool))
            missing.append(Missing(tool=tool, deb=deb, rpm=rpm))
    return missing


def os_family(os_release: Path = OS_RELEASE) -> Family | None:
    """'debian' (Debian, Ubuntu...) or 'fedora' (Fedora, RHEL, CentOS, Rocky, Alma, Oracle) by ID/ID_LIKE."""
    try:
        text = os_release.read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            # os-release values are shell-quoted.
            parts = shlex.split(value, comments=False) if value.strip() else [""]
            fields[key.strip()] = parts[0] if parts else ""
    ids = [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]
    for ident in ids:
        if ident in ("debian", "ubuntu"):
            return "debian"
        if ident in ("fedora", "rhel", "centos"):
            return "fedora"
    return None


def install_command(missing: Sequence[Missing], family: Family) -> list[str]:
    """The exact command that installs `missing` on `family` (each package once)."""
    if family == "debian":
        return ["apt-get", "install", "-y", *dict.fromkeys(m.deb for m in missing)]
    return ["dnf", "install", "-y", *dict.fromkeys(m.rpm for m in missing)]


def hint(missing: Sequence[Missing]) -> str:
    names = ", ".join(m.tool for m in missing)
    return (
        f"missing host tools: {names}; install them with: "
        f"`{shlex.join(install_command(missing, 'debian'))}` (Debian/Ubuntu) or "
        f"`{shlex.join(install_command(missing, 'fedora'))}` (Fedora/RHEL)"
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def install_missing(missing: Sequence[Missing], *, os_release: Path = OS_RELEASE) -> None:
    """Install `missing` with the host's package manager (root only); else ToolError with both commands."""
    if not missing:
        return
    if not _is_root():
        raise ToolError(hint(missing) + " (installing needs root)")
    family = os_family(os_release)
    if family is None:
        raise ToolError(hint(missing) + f" (unknown OS family in {os_release})")
    argv = install_command(missing, family)
    # Non-interactive: a build must never stop at a debconf question.
    env = {"DEBIAN_FRONTEND": "noninteractive"} if family == "debian" else None
    tools.run(argv, timeout=INSTALL_TIMEOUT_S, env=env, capture=True)
    still = check(m.tool for m in missing)
    if still:
        raise ToolError(
            f"`{shlex.join(argv)}` succeeded but these are still missing: " + ", ".join(m.tool for m in still)
        )


def ensure(required: Iterable[str], *, install: bool = False) -> None:
    """Raise ToolError naming every missing tool and the install commands, or install them if asked."""
    missing = check(required)
    if not missing:
        return
    if install:
        install_missing(missing)
        return
    raise ToolError(hint(missing) + ", or run with --install-host-deps as root")
