"""What anaconda's OpenSCAP add-on (`%addon org_fedora_oscap`) will accept, checked before any install.

    sections(text) -> list[Section]                            # every org_fedora_oscap section, with lines
    problems(section, content, expected_profile) -> list[Hit]  # (flattened line, message with the fix)

pykickstart registers `%addon` as a NullSection: it checks the `%end` and nothing inside, so a typo in the
add-on's keys passes pykickstart and stops anaconda only once the installer is running ("Unknown item ...
for org_fedora_oscap addon" is a kickstart error there). The add-on's own rules, as its EL 7 branch
(OpenSCAP/oscap-anaconda-addon, rhel7-branch, org_fedora_oscap/ks/oscap.py) reads a section: one
`key = value` per line (value stripped of surrounding quotes); the keys below and no others; content-type
one of datastream, rpm, archive, scap-security-guide (required); content-url (http, https or ftp) required
except for scap-security-guide, which means the SCAP Security Guide datastream installed in the installer
image itself; rpm and archive need the path of the XCCDF inside (content-path); a fingerprint is a
lowercase hex digest. The profile defaults to "default" when omitted, which in SSG content selects no rule
at all: the factory wants it named.

With the SCAP content the factory knows for the spec's OS (Debian's ssg-nondebian for EL 7), the profile,
datastream-id and xccdf-id the section names must exist in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.stages.compliance import scap

ADDON = "org_fedora_oscap"
# The keys oscap.py's handle_line dispatches on (xccdf-path is its older spelling of content-path).
KEYS = frozenset({
    "content-type", "content-url", "content-path", "datastream-id", "profile", "xccdf-id", "xccdf-path",
    "cpe-path", "tailoring-path", "fingerprint", "certificates",
})  # fmt: skip
CONTENT_TYPES = ("datastream", "rpm", "archive", "scap-security-guide")
URL_PREFIXES = ("http://", "https://", "ftp://")
# The add-on picks the hash by the digest's length (md5, sha1, sha224, sha256, sha384, sha512).
_FINGERPRINT = re.compile(
    r"^(?:[a-z0-9]{32}|[a-z0-9]{40}|[a-z0-9]{56}|[a-z0-9]{64}|[a-z0-9]{96}|[a-z0-9]{128})$"
)

Hit = tuple[int, str]


@dataclass(frozen=True)
class Section:
    line: int  # the flattened line of `%addon org_fedora_oscap`
    items: tuple[tuple[int, str, str], ...]  # (line, key, value) as the add-on splits each line

    def value(self, key: str) -> str | None:
        found = [v for _, k, v in self.items if k == key]
        return found[-1] if found else None

    def line_of(self, key: str) -> int:
        return next((n for n, k, _ in reversed(self.items) if k == key), self.line)


def sections(text: str) -> list[Section]:
    """Every `%addon org_fedora_oscap` section of a (flattened) kickstart. An unclosed one runs to the end
    (pykickstart reports the missing %end itself)."""
    found: list[Section] = []
    start: int | None = None
    items: list[tuple[int, str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if start is None:
            words = line.split()
            if words[:2] == ["%addon", ADDON]:
                start, items = number, []
            continue
        if line.split()[:1] == ["%end"]:
            found.append(Section(start, tuple(items)))
            start = None
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            items.append((number, key.strip(), value.strip().strip('"')))
    if start is not None:
        found.append(Section(start, tuple(items)))
    return found


def _syntax(section: Section) -> list[Hit]:
    hits: list[Hit] = []
    for number, key, _ in section.items:
        if key not in KEYS:
            hits.append(
                (
                    number,
                    f"%addon {ADDON}: unknown key {key!r} (the add-on accepts: {', '.join(sorted(KEYS))})",
                )
            )
    kind = section.value("content-type")
    url = section.value("content-url")
    if kind is None:
        hits.append(
            (section.line, f"%addon {ADDON}: no content-type (e.g. `content-type = scap-security-guide`)")
        )
    elif kind.lower() not in CONTENT_TYPES:
        hits.append(
            (
                section.line_of("content-type"),
                f"%addon {ADDON}: content-type {kind!r} is not one of {', '.join(CONTENT_TYPES)}",
            )
        )
    elif kind.lower() != "scap-security-guide" and not url:
        hits.append((section.line, f"%addon {ADDON}: content-type {kind} needs a content-url"))
    elif kind.lower() in ("rpm", "archive") and not (
        section.value("content-path") or section.value("xccdf-path")
    ):
        hits.append(
            (section.line, f"%addon {ADDON}: content-type {kind} needs content-path (the XCCDF inside)")
        )
    if url is not None and not url.startswith(URL_PREFIXES):
        hits.append(
            (
                section.line_of("content-url"),
                f"%addon {ADDON}: content-url {url!r} must start with {', '.join(URL_PREFIXES)}",
            )
        )
    fingerprint = section.value("fingerprint")
    if fingerprint is not None and not _FINGERPRINT.match(fingerprint):
        hits.append(
            (
                section.line_of("fingerprint"),
                f"%addon {ADDON}: fingerprint {fingerprint!r} is not a lowercase md5/sha1/sha2 hex digest",
            )
        )
    if not section.value("profile"):
        hits.append(
            (
                section.line,
                f"%addon {ADDON}: no profile (the add-on would use 'default', which selects no SSG rule): "
                "name one, e.g. `profile = xccdf_org.ssgproject.content_profile_pci-dss`",
            )
        )
    return hits


def _against(section: Section, content: scap.Content) -> list[Hit]:
    hits: list[Hit] = []
    name = content.path.name
    for key, known in (
        ("datastream-id", content.datastreams),
        ("xccdf-id", content.checklists),
        ("profile", tuple(content.profiles)),
    ):
        value = section.value(key)
        if value and value not in known:
            hits.append(
                (
                    section.line_of(key),
                    f"%addon {ADDON}: {key} {value!r} is not in {name} "
                    f"(it has: {', '.join(sorted(known)) or 'none'})",
                )
            )
    return hits


def problems(
    section: Section, content: scap.Content | None, expected_profile: str | None = None
) -> list[Hit]:
    """What the add-on would refuse (or do other than the spec asks) in `section`.

    `content`: the SCAP content the installer's scap-security-guide stands for (checked only for that
    content type: a content-url is fetched at install time); `expected_profile`: the spec's
    compliance.profile, which the scan after sealing checks (hardening to another one makes no sense)."""
    hits = _syntax(section)
    kind = (section.value("content-type") or "").lower()
    if content is not None and kind == "scap-security-guide":
        hits += _against(section, content)
    profile = section.value("profile")
    if expected_profile is not None and profile and profile != expected_profile:
        hits.append(
            (
                section.line_of("profile"),
                f"%addon {ADDON}: hardens to {profile!r} but compliance.profile scans for "
                f"{expected_profile!r}",
            )
        )
    return hits
