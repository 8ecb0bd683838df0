"""SCAP content: which datastream a spec's OS uses, the profiles and rules it has, and what a scan found.

    spec_problems(spec) -> list[str]       # spec errors: unknown profile (listing the known ones), ...
    read_content(path) -> Content          # benchmark id, version, profiles, rule ids of a source datastream
    rule_results(arf) -> tuple[RuleResult, ...]

The EL datastreams come from Debian's `ssg-nondebian` (SCAP Security Guide 0.1.65); the Debian-based
testbed has none there (ssg-debian ships Debian 10/11 only), so the factory ships its own small one
(scap/testbed-ds.xml, see README there). Reading profiles with ElementTree's iterparse takes about
0.2 s for the 21 MB CentOS 7 datastream (`oscap info --profiles` 1.3 s); the answer is kept per file
(path, size, mtime) for the life of the process, since every command loads its specs.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.errors import ToolError

if TYPE_CHECKING:
    from factory.spec import Spec

SSG_CONTENT = Path("/usr/share/xml/scap/ssg/content")
TESTBED_DATASTREAM = Path(__file__).resolve().parent / "scap" / "testbed-ds.xml"
# (os, major release) -> the SCAP Security Guide datastream for it, and the Debian package shipping it.
SSG_DATASTREAMS: dict[tuple[str, str], tuple[Path, str]] = {
    ("centos", "7"): (SSG_CONTENT / "ssg-centos7-ds.xml", "ssg-nondebian"),
    ("oraclelinux", "7"): (SSG_CONTENT / "ssg-ol7-ds.xml", "ssg-nondebian"),
}
XCCDF = "{http://checklists.nist.gov/xccdf/1.2}"
DS = "{http://scap.nist.gov/schema/scap/source/1.2}"
# Rule results that make the gate fail unless waived: the check failed, or it could not tell.
FAILING = frozenset({"fail", "error", "unknown"})


@dataclass(frozen=True)
class Content:
    path: Path
    benchmark: str
    version: str
    profiles: dict[str, str]  # id -> title
    rules: frozenset[str]
    # What anaconda's %addon org_fedora_oscap names as datastream-id and xccdf-id: the source datastream's
    # data-stream ids and the component-ref ids of its checklists (empty for a bare XCCDF benchmark).
    datastreams: tuple[str, ...] = ()
    checklists: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleResult:
    rule: str
    result: str  # pass, fail, error, unknown, notapplicable, notchecked, notselected, informational, fixed
    title: str
    severity: str


def major_release(release: str | None, kickstart_version: str) -> str:
    """The OS's major release: from os_release, else from the kickstart syntax version (RHEL7 -> 7)."""
    if release:
        return release.split(".")[0]
    return kickstart_version.removeprefix("RHEL")


def default_datastream(os_name: str, major: str) -> Path | None:
    """The datastream the factory uses for an OS when the spec names none (None: none is known)."""
    if os_name == "testbed":
        return TESTBED_DATASTREAM
    found = SSG_DATASTREAMS.get((os_name, major))
    return found[0] if found else None


def _text(el: ET.Element | None) -> str:
    return " ".join((el.text or "").split()) if el is not None else ""


def _parse(path: Path) -> Content:
    benchmark, version = "", ""
    profiles: dict[str, str] = {}
    rules: set[str] = set()
    datastreams: list[str] = []
    checklists: list[str] = []
    stack: list[str] = []
    for event, el in ET.iterparse(path, events=("start", "end")):
        if event == "start":
            parent = stack[-1] if stack else ""
            stack.append(el.tag)
            if el.tag == f"{XCCDF}Benchmark" and not benchmark:
                benchmark = el.get("id", "")
            elif el.tag == f"{DS}data-stream":
                datastreams.append(el.get("id", ""))
            elif el.tag == f"{DS}component-ref" and parent == f"{DS}checklists":
                checklists.append(el.get("id", ""))
            continue
        stack.pop()
        parent = stack[-1] if stack else ""
        if el.tag == f"{XCCDF}version" and parent == f"{XCCDF}Benchmark" and not version:
            version = _text(el)
        elif el.tag == f"{XCCDF}Profile":
            profiles[el.get("id", "")] = _text(el.find(f"{XCCDF}title"))
            el.clear()
        elif el.tag == f"{XCCDF}Rule":
            rules.add(el.get("id", ""))
            el.clear()
    if not benchmark:
        raise ValueError("no XCCDF 1.2 Benchmark in it")
    found = (tuple(datastreams), tuple(checklists))
    return Content(path, benchmark, version or "unknown", profiles, frozenset(rules), *found)


@functools.lru_cache(maxsize=16)
def _cached(path: Path, size: int, mtime_ns: int) -> Content:
    return _parse(path)


def read_content(path: Path) -> Content:
    """Profiles and rules of a SCAP source datastream (or a bare XCCDF 1.2 benchmark).

    Raises OSError for an unreadable file, ValueError for one that is not such content."""
    st = path.stat()
    try:
        return _cached(path.resolve(), st.st_size, st.st_mtime_ns)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None


def spec_problems(spec: Spec, *, require_installed: bool = True) -> list[str]:
    """What is wrong with the spec's compliance section, as 'field.path: problem' lines.

    A default datastream that is not installed is a host problem (ToolError, exit 3), not a spec one; with
    `require_installed=False` (loading a spec: `factory validate` and `plan` must work on a host without
    the 1.6 GB ssg-nondebian) the profile check is left to the build's preflight, which installs it."""
    comp = spec.compliance
    if comp is None:
        return []
    path = spec.compliance_datastream()
    if path is None:
        return [
            f"compliance.datastream: no SCAP Security Guide datastream is known for {spec.os} "
            f"{major_release(spec.os_release, spec.kickstart.version)}: give compliance.datastream"
        ]
    if comp.datastream is None and not path.is_file():
        if not require_installed:
            return []
        package = SSG_DATASTREAMS.get((spec.os, major_release(spec.os_release, spec.kickstart.version)))
        package_name = package[1] if package else "scap-security-guide content"
        raise ToolError(
            f"{path}: the SCAP Security Guide datastream for {spec.os} is not installed "
            f"(Debian/Ubuntu: apt-get install {package_name}), or give compliance.datastream"
        )
    try:
        content = read_content(path)
    except FileNotFoundError:
        return [f"compliance.datastream: {path} does not exist"]
    except (OSError, ValueError) as exc:
        return [f"compliance.datastream: {path}: not a SCAP source datastream ({exc})"]
    problems = []
    if comp.profile not in content.profiles:
        known = ", ".join(sorted(content.profiles)) or "none"
        problems.append(
            f"compliance.profile: {comp.profile!r} is not a profile of {path.name} (it has: {known})"
        )
    for i, waiver in enumerate(comp.waivers):
        if waiver.rule not in content.rules:
            problems.append(
                f"compliance.waivers.{i}.rule: {waiver.rule!r} is not a rule of {path.name} "
                "(give the full XCCDF rule id, as in the report)"
            )
    return problems


def rule_results(arf: Path) -> tuple[RuleResult, ...]:
    """Every rule-result of the (one) TestResult in an ARF report, with the rule's title."""
    titles: dict[str, str] = {}
    found: list[tuple[str, str, str]] = []
    try:
        for _, el in ET.iterparse(arf, events=("end",)):
            if el.tag == f"{XCCDF}Rule":
                titles[el.get("id", "")] = _text(el.find(f"{XCCDF}title"))
                el.clear()
            elif el.tag == f"{XCCDF}rule-result":
                found.append((el.get("idref", ""), _text(el.find(f"{XCCDF}result")), el.get("severity", "")))
                el.clear()
    except (OSError, ET.ParseError) as exc:
        raise ToolError(f"{arf}: oscap wrote no readable ARF report: {exc}") from None
    return tuple(RuleResult(rule, result, titles.get(rule, ""), sev) for rule, result, sev in found)
