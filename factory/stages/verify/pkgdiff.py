"""What changed in the installed packages between two verified builds: added, removed, upgraded, downgraded,
and whether the kernel changed.

    diff_inventories(before, after) -> PackageDiff        # pure
    diff_builds(before_path, after_path) -> PackageDiff   # the inventories verify recorded in two builds
    previous_verified(build_path) -> Path | None          # the build a new one is compared with

Versions are ordered the way each package manager orders them: rpm's rpmvercmp for EL (implemented here:
the one pure-Python copy on PyPI is unmaintained since 2018), dpkg's for Debian (python-debian's Version,
Debian's own library). Packages are matched by (name, arch); a name installed in several versions at once
(rpm's install-only kernels) is compared version by version.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version as DebianVersion

from factory.core.record import BuildDir, from_jsonable
from factory.errors import FactoryError, InputError
from factory.stages.verify import inventory
from factory.stages.verify.inventory import Inventory, Package

log = logging.getLogger(__name__)

# Packages that hold a bootable kernel: a change in them is called out on its own.
KERNEL_PACKAGES = {
    "rpm": re.compile(r"^kernel(-uek|-rt|-core)?$"),
    "dpkg": re.compile(r"^linux-image-"),
}


def _rpm_segments_cmp(a: str, b: str) -> int:
    """rpmvercmp() of rpm 4.x (lib/rpmvercmp.c): -1, 0 or 1.

    Runs of ASCII letters or digits are compared in turn, everything else only separates them; a digit run
    beats a letter run; digit runs compare as numbers (leading zeros dropped); "~" sorts before anything,
    even the end of the string (1.0~rc1 < 1.0); "^" sorts after the end but before anything else
    (1.0 < 1.0^git1 < 1.0.1; rpm >= 4.15, an EL 7 rpm does not know it)."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not (a[i].isascii() and a[i].isalnum()) and a[i] not in "~^":
            i += 1
        while j < len(b) and not (b[j].isascii() and b[j].isalnum()) and b[j] not in "~^":
            j += 1
        ca = a[i] if i < len(a) else ""
        cb = b[j] if j < len(b) else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (ca and cb):
            break
        numeric = ca.isdigit()
        kind = str.isdigit if numeric else str.isalpha
        si, sj = i, j
        while i < len(a) and a[i].isascii() and kind(a[i]):
            i += 1
        while j < len(b) and b[j].isascii() and kind(b[j]):
            j += 1
        seg_a, seg_b = a[si:i], b[sj:j]
        if not seg_b:
            # b has a run of the other kind here: a number is newer than letters.
            return 1 if numeric else -1
        if numeric:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
    at_end_a, at_end_b = i >= len(a), j >= len(b)
    if at_end_a and at_end_b:
        return 0
    return -1 if at_end_a else 1


def rpmvercmp(a: str, b: str) -> int:
    return _rpm_segments_cmp(a, b)


def compare_rpm(a: Package, b: Package) -> int:
    """rpm's EVR order: epoch (none = 0) first, then version, then release."""
    ea, eb = a.epoch or 0, b.epoch or 0
    if ea != eb:
        return 1 if ea > eb else -1
    return rpmvercmp(a.version, b.version) or rpmvercmp(a.release or "", b.release or "")


def compare_dpkg(a: Package, b: Package) -> int:
    """dpkg's order (deb-version(7)): epoch, upstream version, Debian revision; "~" before anything."""
    va, vb = DebianVersion(a.evr()), DebianVersion(b.evr())
    return 0 if va == vb else (1 if va > vb else -1)


COMPARE = {"rpm": compare_rpm, "dpkg": compare_dpkg}


@dataclass(frozen=True, order=True)
class Entry:
    name: str
    arch: str
    evr: str


@dataclass(frozen=True, order=True)
class Change:
    name: str
    arch: str
    before: str
    after: str


@dataclass(frozen=True)
class KernelChange:
    before: str  # uname -r of the earlier image
    after: str
    packages: tuple[str, ...]  # the kernel packages that were added, removed or changed


@dataclass(frozen=True)
class PackageDiff:
    format: str
    before: str  # build id (or a label) of the earlier inventory
    after: str
    added: tuple[Entry, ...]
    removed: tuple[Entry, ...]
    upgraded: tuple[Change, ...]
    downgraded: tuple[Change, ...]
    unchanged: int
    kernel: KernelChange | None
    packages: int  # installed in the later image
    notes: tuple[str, ...] = ()

    def changed(self) -> bool:
        return bool(self.added or self.removed or self.upgraded or self.downgraded or self.kernel)


def _by_key(packages: tuple[Package, ...]) -> dict[tuple[str, str], dict[str, Package]]:
    out: dict[tuple[str, str], dict[str, Package]] = defaultdict(dict)
    for p in packages:
        out[(p.name, p.arch)][p.evr()] = p
    return out


def diff_inventories(
    before: Inventory, after: Inventory, *, before_label: str = "before", after_label: str = "after"
) -> PackageDiff:
    """The change from `before` to `after` (both of one package format)."""
    if before.format != after.format:
        raise InputError(
            f"cannot compare a {before.format} inventory ({before_label}) with a {after.format} one "
            f"({after_label}): their versions have no common order"
        )
    compare = COMPARE[after.format]
    old, new = _by_key(before.packages), _by_key(after.packages)
    added: list[Entry] = []
    removed: list[Entry] = []
    upgraded: list[Change] = []
    downgraded: list[Change] = []
    unchanged = 0
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, {}), new.get(key, {})
        same = was.keys() & now.keys()
        unchanged += len(same)
        gone = [was[v] for v in was if v not in same]
        came = [now[v] for v in now if v not in same]
        if len(gone) == 1 and len(came) == 1:
            change = Change(key[0], key[1], gone[0].evr(), came[0].evr())
            (upgraded if compare(came[0], gone[0]) > 0 else downgraded).append(change)
            continue
        removed += [Entry(p.name, p.arch, p.evr()) for p in gone]
        added += [Entry(p.name, p.arch, p.evr()) for p in came]
    pattern = KERNEL_PACKAGES[after.format]
    touched = sorted(
        {e.name for e in (*added, *removed) if pattern.match(e.name)}
        | {c.name for c in (*upgraded, *downgraded) if pattern.match(c.name)}
    )
    kernel = (
        KernelChange(before.kernel, after.kernel, tuple(touched))
        if touched or before.kernel != after.kernel
        else None
    )
    return PackageDiff(
        format=after.format,
        before=before_label,
        after=after_label,
        added=tuple(sorted(added)),
        removed=tuple(sorted(removed)),
        upgraded=tuple(sorted(upgraded)),
        downgraded=tuple(sorted(downgraded)),
        unchanged=unchanged,
        kernel=kernel,
        packages=len(after.packages),
    )


def diff_builds(before: BuildDir, after: BuildDir) -> PackageDiff:
    """The diff of two builds' recorded inventories. Builds of two specs are compared, with a note
    (e.g. centos72 against ol72 is a question a reviewer asks); two package formats are refused."""
    result = diff_inventories(
        inventory.load(before.path),
        inventory.load(after.path),
        before_label=before.build_id,
        after_label=after.build_id,
    )
    if before.spec_name != after.spec_name:
        note = f"the builds are of two specs: {before.spec_name} and {after.spec_name}"
        result = PackageDiff(**{**result.__dict__, "notes": (*result.notes, note)})
    return result


def previous_verified(build_path: Path) -> BuildDir | None:
    """The newest build of the same spec older than `build_path` (build ids sort by time) whose verify
    passed and recorded an inventory."""
    for path in sorted(build_path.parent.iterdir(), reverse=True):
        if path.name >= build_path.name or not (path / inventory.INVENTORY).is_file():
            continue
        try:
            build = BuildDir.open(path)
        except FactoryError:
            continue
        if build.stage_ok("verify"):
            return build
    return None


def against_previous(build: BuildDir) -> PackageDiff | None:
    """The diff from the previous verified build of the spec to `build` (None: there is none). An earlier
    build whose inventory cannot be read is logged and left out: it must not fail this build's verify."""
    previous = previous_verified(build.path)
    if previous is None:
        return None
    try:
        return diff_builds(previous, build)
    except InputError as exc:
        log.warning("no package diff for %s: %s", build.path, exc.message)
        return None


def recorded_line(build_path: Path) -> str | None:
    """The build summary's line for a build: its package count and the diff verify recorded (None: the
    build has no verify result with an inventory)."""
    try:
        result = (BuildDir.open(build_path).stage("verify") or {}).get("result") or {}
    except FactoryError:
        return None
    if not result.get("packages"):
        return None
    doc = result.get("package_diff")
    if doc is None:
        return f"{result['packages']} packages; no earlier verified build of the spec to compare with"
    try:
        return summary(from_jsonable(PackageDiff, doc))
    except (KeyError, TypeError, ValueError):
        return None


def summary(diff: PackageDiff) -> str:
    """One line: counts against the earlier build, and the kernel change."""
    counts = (
        f"{len(diff.upgraded)} upgraded, {len(diff.downgraded)} downgraded, {len(diff.added)} added, "
        f"{len(diff.removed)} removed"
    )
    line = f"{diff.packages} packages; since {diff.before}: {counts}"
    if diff.kernel is not None:
        line += f"; kernel {diff.kernel.before} -> {diff.kernel.after}"
        if diff.kernel.before == diff.kernel.after:
            line += f" (packages {', '.join(diff.kernel.packages)} changed)"
    return line


def render(diff: PackageDiff) -> list[str]:
    """The diff as text lines, for `factory diff` and reviewers."""
    lines = [f"packages ({diff.format}): {diff.before} -> {diff.after}"]
    lines += [f"note: {n}" for n in diff.notes]
    lines.append(
        f"{len(diff.upgraded)} upgraded, {len(diff.downgraded)} downgraded, {len(diff.added)} added, "
        f"{len(diff.removed)} removed, {diff.unchanged} unchanged"
    )
    if diff.kernel is not None:
        k = diff.kernel
        changed = f" ({', '.join(k.packages)})" if k.packages else ""
        lines.append(f"kernel: {k.before} -> {k.after}{changed}")
    for title, changes in (("upgraded", diff.upgraded), ("downgraded", diff.downgraded)):
        if changes:
            lines.append(f"{title}:")
            lines += [f"  {c.name}.{c.arch}  {c.before} -> {c.after}" for c in changes]
    for title, entries in (("added", diff.added), ("removed", diff.removed)):
        if entries:
            lines.append(f"{title}:")
            lines += [f"  {e.name}.{e.arch}  {e.evr}" for e in entries]
    return lines
