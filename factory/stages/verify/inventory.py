"""The installed packages of a booted image, read over the verify boot's SSH connection.

    collect(ssh_config) -> Inventory        # one `ssh ... sh -s` running QUERY_SCRIPT in the guest
    parse(text) -> Inventory                # pure: the script's output into typed packages
    save(inventory, build_path) / load(build_path)

EL images answer with rpm (`rpm -qa --queryformat`: name, epoch, version, release, arch, license); Debian
images (the testbed) with dpkg-query. dpkg keeps no license per package: it is read from the machine-readable
(DEP-5) `/usr/share/doc/<pkg>/copyright`'s `License:` lines where the package ships one, and is left empty
otherwise (an image built with `path-exclude=/usr/share/doc/*`, as the testbed is, has none).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.core.record import atomic_write_text, to_jsonable
from factory.errors import InputError, ToolError, VerifyError
from factory.host import tools
from factory.vm.guest import ssh_argv

# Where verify keeps the inventory of the image it booted, relative to the build directory.
INVENTORY = Path("verify") / "inventory.json"

# A few hundred packages under TCG take seconds; a minute means the guest is stuck.
QUERY_TIMEOUT_S = 120.0

RPM_QUERYFORMAT = r"%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{LICENSE}\n"
DPKG_SHOWFORMAT = r"${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"

# One POSIX sh script, so the whole inventory costs one round trip over the (TCG-slow) SSH connection.
# Sections start with a "== name" line; nothing the query prints can start with "== ".
QUERY_SCRIPT = f"""\
set -u
echo '== os-release'
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo '== kernel'
uname -r
if command -v rpm >/dev/null 2>&1 && rpm -q rpm >/dev/null 2>&1; then
  echo '== rpm'
  rpm -qa --queryformat '{RPM_QUERYFORMAT}' || exit 3
elif command -v dpkg-query >/dev/null 2>&1; then
  echo '== dpkg'
  dpkg-query -W -f='{DPKG_SHOWFORMAT}' || exit 3
  echo '== copyright'
  set -- /usr/share/doc/*/copyright
  # One awk for all files (a fork per package is slow under TCG). Only DEP-5 files (first line
  # "Format: ...") have License: fields with a meaning; each distinct line is printed once per file.
  if [ -f "$1" ]; then
    awk 'FNR == 1 && !/^Format:/ {{ nextfile }}
      /^License:/ && !seen[FILENAME, $0]++ {{ print FILENAME "\\t" $0 }}' "$@"
  fi
else
  echo '== none'
fi
"""

# dpkg's status letter (second of db:Status-Abbrev) for a package whose files are on disk: installed,
# unpacked, half-configured, triggers awaited or pending. "c" (config-files only) is a removed package,
# "n" one dpkg knows of but never installed.
DPKG_INSTALLED = frozenset("iUFWt")

_COPYRIGHT_PATH = re.compile(r"^/usr/share/doc/([^/]+)/copyright$")


@dataclass(frozen=True, order=True)
class Package:
    name: str
    arch: str
    epoch: int | None
    version: str
    release: str | None  # rpm's release; dpkg's Debian revision (None for a native package)
    licenses: tuple[str, ...] = ()

    def evr(self) -> str:
        """[epoch:]version[-release], as rpm -q and dpkg print it."""
        text = self.version if self.release is None else f"{self.version}-{self.release}"
        return text if self.epoch is None else f"{self.epoch}:{text}"


@dataclass(frozen=True)
class Inventory:
    format: str  # "rpm" or "dpkg"
    distro_id: str  # os-release ID: centos, ol, rhel, debian...
    distro_version: str  # os-release VERSION_ID
    kernel: str  # uname -r of the booted image
    packages: tuple[Package, ...]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = to_jsonable(self)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Inventory:
        packages = tuple(
            Package(
                name=str(p["name"]),
                arch=str(p["arch"]),
                epoch=None if p.get("epoch") is None else int(p["epoch"]),
                version=str(p["version"]),
                release=None if p.get("release") is None else str(p["release"]),
                licenses=tuple(str(x) for x in p.get("licenses", ())),
            )
            for p in doc["packages"]
        )
        return cls(
            format=str(doc["format"]),
            distro_id=str(doc["distro_id"]),
            distro_version=str(doc["distro_version"]),
            kernel=str(doc["kernel"]),
            packages=packages,
        )


def sections(text: str) -> dict[str, list[str]]:
    """The script's output by section name ("== name" lines), each a list of lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:].strip(), [])
        elif current is not None and line:
            current.append(line)
    return out


def parse_os_release(lines: list[str]) -> dict[str, str]:
    """KEY=value lines (values optionally quoted), as os-release(5) defines them."""
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def parse_rpm(lines: list[str]) -> list[Package]:
    """rpm -qa lines in RPM_QUERYFORMAT."""
    packages = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 6:
            raise VerifyError(f"unreadable rpm query line (expected 6 tab-separated fields): {line!r}")
        name, epoch, version, release, arch, license_ = fields
        if name == "gpg-pubkey":
            # The rpm database's imported signing keys: not software installed in the image.
            continue
        packages.append(
            Package(
                name=name,
                arch=arch,
                epoch=None if epoch == "(none)" else int(epoch),
                version=version,
                release=release,
                licenses=() if license_ in ("", "(none)") else (license_,),
            )
        )
    return packages


def split_debian_version(text: str) -> tuple[int | None, str, str | None]:
    """[epoch:]upstream[-revision] -> (epoch, upstream, revision) as deb-version(7) splits it: the epoch
    before the first colon, the revision after the last hyphen."""
    epoch: int | None = None
    head, sep, rest = text.partition(":")
    if sep and head.isdigit():
        epoch, text = int(head), rest
    upstream, sep, revision = text.rpartition("-")
    if not sep:
        return epoch, text, None
    return epoch, upstream, revision


def parse_copyright(lines: list[str]) -> dict[str, tuple[str, ...]]:
    """ "<path>\\tLicense: <name>" lines -> package -> distinct license names, in file order."""
    found: dict[str, dict[str, None]] = {}
    for line in lines:
        path, _, field = line.partition("\t")
        m = _COPYRIGHT_PATH.match(path)
        if m is None or not field.startswith("License:"):
            continue
        # The first line of a License: field is the short name; the full text follows on indented lines.
        name = field.removeprefix("License:").strip()
        if name:
            found.setdefault(m.group(1), {})[name] = None
    return {pkg: tuple(names) for pkg, names in found.items()}


def parse_dpkg(lines: list[str], licenses: dict[str, tuple[str, ...]]) -> list[Package]:
    """dpkg-query -W lines in DPKG_SHOWFORMAT; installed packages only."""
    packages = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) != 4:
            raise VerifyError(f"unreadable dpkg-query line (expected 4 tab-separated fields): {line!r}")
        status, name, version, arch = fields
        if len(status) < 2 or status[1] not in DPKG_INSTALLED or not version:
            continue
        epoch, upstream, revision = split_debian_version(version)
        packages.append(
            Package(
                name=name,
                arch=arch,
                epoch=epoch,
                version=upstream,
                release=revision,
                # /usr/share/doc/<pkg> is named without the :arch a multi-arch package's name may carry.
                licenses=licenses.get(name.split(":")[0], ()),
            )
        )
    return packages


def parse(text: str) -> Inventory:
    """The output of QUERY_SCRIPT into an Inventory (packages sorted by name, arch, version)."""
    parts = sections(text)
    release = parse_os_release(parts.get("os-release", []))
    kernel = (parts.get("kernel") or ["unknown"])[0].strip()
    if "rpm" in parts:
        fmt, packages = "rpm", parse_rpm(parts["rpm"])
    elif "dpkg" in parts:
        fmt, packages = "dpkg", parse_dpkg(parts["dpkg"], parse_copyright(parts.get("copyright", [])))
    else:
        raise VerifyError("the image has no package database the factory reads (neither rpm nor dpkg)")
    if not packages:
        raise VerifyError(f"the image's {fmt} database lists no installed package")
    return Inventory(
        format=fmt,
        distro_id=release.get("ID", "unknown"),
        distro_version=release.get("VERSION_ID", ""),
        kernel=kernel,
        packages=tuple(sorted(packages)),
    )


def collect(ssh_config: Path) -> Inventory:
    """Run QUERY_SCRIPT in the guest over the verify boot's SSH connection and parse what it prints."""
    try:
        proc = tools.run(
            ssh_argv(ssh_config, "sh", "-s"),
            input=QUERY_SCRIPT.encode(),
            timeout=QUERY_TIMEOUT_S,
            check=False,
        )
    except ToolError as exc:
        raise VerifyError(f"the package inventory query did not finish: {exc.message}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise VerifyError(
            f"the package inventory query failed in the guest (exit status {proc.returncode})"
            + (f": {tail[0]}" if tail else "")
        )
    return parse(proc.stdout.decode(errors="replace"))


def save(inventory: Inventory, build_path: Path) -> Path:
    path = build_path / INVENTORY
    atomic_write_text(path, json.dumps(inventory.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def recorded(build_path: Path) -> Inventory | None:
    """The build's inventory if verify recorded one (a build verified before inventories were: None)."""
    return load(build_path) if (build_path / INVENTORY).is_file() else None


def load(build_path: Path) -> Inventory:
    """The inventory verify recorded in `build_path`; InputError (exit 2) when there is none."""
    path = build_path / INVENTORY
    try:
        doc = json.loads(path.read_text())
        return Inventory.from_json(doc)
    except FileNotFoundError:
        raise InputError(
            f"{build_path}: no package inventory ({INVENTORY}): the build was not verified, or was verified "
            "by a factory that did not record packages (run `factory verify` on it)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable package inventory: {exc}") from None
