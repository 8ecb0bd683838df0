"""The kickstart gate: pykickstart syntax for the spec's version plus the policy rules, as file:line findings.

Parsing happens on the flattened text (factory.stages.validate.flatten) with followIncludes=False, so every
line
number maps back to the file that holds it. pykickstart's warnings (deprecations, duplicates) are findings
too: a kickstart that only warns today fails in the next release.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pykickstart.errors import KickstartError, KickstartVersionError, KickstartWarning
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

from factory.errors import SpecError, UsageError
from factory.spec import Spec
from factory.stages.validate.flatten import Flattened, display_path, flatten, flatten_for_spec
from factory.stages.validate.rules import RULE_NAMES, RULES, Context

SYNTAX = "syntax"  # pykickstart errors and parse warnings: never switched off
PRE_INCLUDE = "pre-include"  # notes: an %include of a file a %pre writes at install time (not checked)
DEPRECATED = "deprecated"  # pykickstart deprecation warnings

# pykickstart puts the (flattened) line into some messages; the finding carries the real one instead.
_LOCK = threading.Lock()
_LINE_IN_MESSAGE = re.compile(r"\s*(?:on|at) line (\d+)")


@dataclass(frozen=True, order=True)
class Finding:
    file: Path
    line: int  # 0: the file as a whole (something is missing)
    rule: str
    message: str
    severity: str = "error"

    def where(self) -> str:
        path = display_path(self.file)
        return f"{path}:{self.line}" if self.line > 0 else path


@dataclass(frozen=True)
class Report:
    kickstart: Path
    version: str
    findings: tuple[Finding, ...]
    # Every file read (the kickstart and its includes), and the rules the spec switched off.
    files: tuple[Path, ...] = ()
    disabled: tuple[str, ...] = field(default=())
    # What could not be checked (severity "note"): shown, never a reason to fail.
    notes: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings


class _CollectingParser(KickstartParser):  # type: ignore[misc]
    """Collects every error pykickstart can recover from (errorsAreFatal=False only prints them)."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler, followIncludes=False, errorsAreFatal=False)
        self.errors: list[tuple[int, str]] = []
        self.current_line = 0

    def handleCommand(self, lineno: int, args: list[str]) -> Any:
        self.current_line = lineno
        return super().handleCommand(lineno, args)

    def _tryFunc(self, fn: Any) -> None:
        # The one hook where pykickstart decides between raising and printing a command's error.
        try:
            fn()
        except KickstartError as exc:
            self.errors.append((exc.lineno or self.current_line, _message(exc)))


def _message(exc: KickstartError) -> str:
    text = str(exc.message or "").strip() or "syntax error"
    return " ".join(text.split())


def _warning_hit(warning: warnings.WarningMessage, fallback: int) -> tuple[int, str, str]:
    text = " ".join(str(warning.message).split())
    match = _LINE_IN_MESSAGE.search(text)
    line = int(match.group(1)) if match else fallback
    text = _LINE_IN_MESSAGE.sub("", text, count=1)
    rule = DEPRECATED if issubclass(warning.category, DeprecationWarning) else SYNTAX
    return line, rule, text


@functools.cache
def _pristine(version: str) -> Any:
    try:
        return makeVersion(version)
    except KickstartVersionError:
        raise UsageError(f"unknown kickstart version {version!r} (e.g. RHEL7, RHEL8, RHEL9)") from None


def _handler(version: str) -> Any:
    """A fresh handler for `version`, in a fraction of makeVersion's time.

    makeVersion builds an argparse parser for each of ~70 commands (about 13 ms). We deep-copy a pristine
    handler instead, sharing those parsers (`op`): they hold configuration only, plus the line number of
    the command being parsed, which _LOCK keeps to one parse at a time. The pristine one is never parsed into.
    """
    pristine = _pristine(version)
    shared: dict[int, Any] = {}
    for command in pristine.commands.values():
        op = getattr(command, "op", None)
        if op is not None:
            shared[id(op)] = op
    return copy.deepcopy(pristine, shared)


def _parse(flat: Flattened, version: str) -> tuple[Any, list[tuple[int, str, str]]]:
    # One parse at a time: the command parsers are shared (see _handler), and catch_warnings is global state.
    with _LOCK:
        return _parse_locked(flat, version)


def _parse_locked(flat: Flattened, version: str) -> tuple[Any, list[tuple[int, str, str]]]:
    handler = _handler(version)
    parser = _CollectingParser(handler)
    hits: list[tuple[int, str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser.readKickstartFromString(flat.text)
        except KickstartError as exc:
            # Section-level errors (unknown %section, missing %end) stop pykickstart: report what we have.
            hits.append((exc.lineno or parser.current_line, SYNTAX, _message(exc)))
    hits.extend((line, SYNTAX, msg) for line, msg in parser.errors)
    hits.extend(
        _warning_hit(w, parser.current_line) for w in caught if issubclass(w.category, KickstartWarning)
    )
    return handler, hits


def _check_disabled(disabled: Collection[str]) -> None:
    for name in disabled:
        if name not in RULE_NAMES and name != DEPRECATED:
            raise UsageError(f"unknown rule {name!r} to disable (known: {', '.join(sorted(RULE_NAMES))})")


def _run(flat: Flattened, version: str, disabled: Collection[str], spec: Spec | None) -> Report:
    handler, hits = _parse(flat, version)
    ctx = Context(handler=handler, flat=flat, spec=spec)
    found: list[Finding] = []

    def add(line: int, rule: str, message: str) -> None:
        file, real = flat.origin(line) if line > 0 else (flat.root, 0)
        found.append(Finding(file=file, line=real, rule=rule, message=message))

    for line, name, message in hits:
        if name not in disabled:
            add(line, name, message)
    unchecked = ", ".join(n.target for n in flat.notes)
    for rule in RULES:
        if rule.name in disabled or (rule.needs_spec and spec is None):
            continue
        for line, message in rule.check(ctx):
            # "Something is missing" may be what the unchecked file holds: say how to record that.
            hint = (
                f" (if {unchecked}, written by %pre, provides it: disable {rule.name} with that reason)"
                if line == 0 and unchecked
                else ""
            )
            add(line, rule.name, message + hint)
    return Report(
        kickstart=flat.root,
        version=version,
        findings=tuple(sorted(set(found))),
        files=flat.files,
        disabled=tuple(sorted(disabled)),
        notes=tuple(Finding(n.file, n.line, PRE_INCLUDE, n.message, severity="note") for n in flat.notes),
    )


def validate_file(path: Path, version: str = "RHEL7", disabled: Collection[str] = ()) -> Report:
    """Validate one kickstart (and its includes) with pykickstart `version` and the spec-free rules.

    Raises KickstartInputError (exit 2) for unreadable input, UsageError for an unknown version or rule.
    """
    _check_disabled(disabled)
    _pristine(version)  # an unknown version is a usage error before any file is read
    return _run(flatten(path), version, disabled, spec=None)


def validate_spec(spec: Spec) -> Report:
    """Validate the kickstart the factory would serve for `spec`, with the spec's version and switches."""
    return validate_flattened(spec, flatten_for_spec(spec))


def validate_flattened(spec: Spec, flat: Flattened) -> Report:
    """validate_spec on a kickstart already flattened for `spec` (the build flattens it once)."""
    names = [off.rule for off in spec.kickstart.disabled_rules]
    unknown = [
        f"kickstart.disabled_rules.{i}.rule: unknown rule {name!r} (known: {', '.join(sorted(RULE_NAMES))})"
        for i, name in enumerate(names)
        if name not in RULE_NAMES and name != DEPRECATED
    ]
    if unknown:
        raise SpecError(Path(display_path(spec.source)), unknown)
    return _run(flat, spec.kickstart.version, frozenset(names), spec)


def rules_table() -> Iterator[tuple[str, str]]:
    """(name, description) of every rule, for `factory validate --list-rules`."""
    yield SYNTAX, "pykickstart accepts the kickstart for the spec's version (never switched off)"
    yield DEPRECATED, "no option or command pykickstart marks as deprecated"
    for rule in RULES:
        yield rule.name, rule.description
