"""Inline every `%include` of a kickstart, keeping a map from each flattened line to its real file:line.

Why flatten ourselves instead of letting pykickstart follow includes: pykickstart reports an error inside an
included file with that file's line number but not its name, and the installer fetching a kickstart over HTTP
cannot follow relative includes at all. So the install stage serves `Flattened.text`, and the validator parses
it with followIncludes=False and maps every line number back through `Flattened.origin`.

Relative `%include` paths resolve against the including file's folder (pykickstart first tries the current
directory, which makes the answer depend on where you stand). A missing include is an error, unless it is an
absolute path that a `%pre` of the same kickstart writes (factory.stages.validate.prewrites): anaconda runs
every
%pre before it reads includes, so that line stays in the served text (pykickstart, with followIncludes=False,
skips it) and becomes a note saying it was not checked.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from factory.errors import InputError
from factory.spec import Spec, read_text_file
from factory.stages.validate.prewrites import written_paths

# The kernel switch of Oracle Linux kickstarts (see kickstarts/common/kernel-rhck.ks): with `keep_uek: true`
# the factory serves the kickstart with this include target swapped.
KERNEL_SWITCH = {"common/kernel-rhck.ks": "common/kernel-uek.ks"}


class KickstartInputError(InputError):
    """A kickstart (or a file it includes) cannot be read or its %include tree is broken."""


class MissingIncludeError(KickstartInputError):
    pass


class IncludeLoopError(KickstartInputError):
    pass


def display_path(path: Path) -> str:
    """The path relative to the current directory when it lies under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Note:
    """Something the validator could not check, said where it is (not a finding: the exit code stays)."""

    file: Path
    line: int
    message: str
    target: str = ""  # the %include path it is about


@dataclass(frozen=True)
class Flattened:
    """A kickstart with every %include inlined, and where each of its lines came from."""

    root: Path
    text: str
    # lines[i] is the (file, 1-based line) of flattened line i + 1.
    lines: tuple[tuple[Path, int], ...]
    # Every file read, root first, each once: the inputs of the validate/install stages.
    files: tuple[Path, ...]
    # %include lines of files a %pre writes at install time, kept in `text` unchecked.
    notes: tuple[Note, ...] = ()

    def origin(self, line_no: int) -> tuple[Path, int]:
        """(file, line) of 1-based flattened line `line_no`.

        pykickstart reports line 0 for whole-file problems and may report one past the end for a section
        left open at the end: those map to the root file's line 0 and to the last real line.
        """
        if line_no < 1 or not self.lines:
            return (self.root, 0)
        return self.lines[min(line_no, len(self.lines)) - 1]


def _include_target(line: str) -> str | None:
    """The argument of a `%include` line, '' for a bare `%include`, None for any other line."""
    stripped = line.lstrip()
    if not stripped.startswith("%include"):
        return None
    try:
        # The same split pykickstart applies, so quoting means the same thing here and there.
        args = shlex.split(stripped, comments=True)
    except ValueError:
        return None  # leave it for pykickstart to report as a syntax error
    if not args or args[0] != "%include":
        return None
    return args[1] if len(args) > 1 else ""


def flatten(path: Path, swaps: Mapping[str, str] | None = None) -> Flattened:
    """Read `path` and inline its %include tree.

    `swaps` maps an %include target, exactly as written, to the one to include instead.

    Raises KickstartInputError (exit 2) for a missing, unreadable, empty or binary file, a missing include
    (naming the including file:line) and an include loop (naming the chain).
    """
    root = Path(os.path.abspath(path))
    wanted = dict(swaps or {})
    out: list[str] = []
    origins: list[tuple[Path, int]] = []
    files: list[Path] = []
    # The chain of (file, line of its %include) currently open, for loop detection and messages.
    stack: list[tuple[Path, int]] = []
    swapped: set[str] = set()
    # Absolute includes not found: (file, line, target, index of the kept line in `out`).
    deferred: list[tuple[Path, int, str, int]] = []

    def visit(file: Path, text: str) -> None:
        if file not in files:
            files.append(file)
        for number, line in enumerate(text.splitlines(), start=1):
            target = _include_target(line)
            if target and target in wanted:
                target = wanted[target]
                swapped.add(target)
            if not target:
                # Ordinary lines, and a bare `%include` that pykickstart reports itself with this line.
                out.append(line)
                origins.append((file, number))
                continue
            where = f"{display_path(file)}:{number}"
            child = Path(os.path.normpath(file.parent / target))
            chain = [*stack, (file, number)]
            if any(child == f for f, _ in chain):
                names = " -> ".join(display_path(f) for f, _ in chain) + f" -> {display_path(child)}"
                raise IncludeLoopError(f"{where}: %include loop: {names}")
            if not child.exists() and os.path.isabs(target):
                # Perhaps a %pre writes it: decided once every %pre has been seen (see _pre_written).
                deferred.append((file, number, target, len(out)))
                out.append(line)
                origins.append((file, number))
                continue
            if not child.exists():
                raise MissingIncludeError(
                    f"{where}: %include {target}: file not found (looked for {display_path(child)})"
                )
            try:
                child_text = read_text_file(child, "included kickstart")
            except InputError as exc:
                raise KickstartInputError(f"{exc.message} (included from {where})") from None
            stack.append((file, number))
            visit(child, child_text)
            stack.pop()

    try:
        text = read_text_file(root, "kickstart")
    except InputError as exc:
        # Keep the path as the user typed it (read_text_file got the absolute one).
        raise KickstartInputError(exc.message.replace(str(root), display_path(root), 1)) from None
    visit(root, text)
    notes = _pre_notes(deferred, out, origins)
    unused = sorted(k for k, v in wanted.items() if v not in swapped)
    if unused:
        raise KickstartInputError(
            f"{display_path(root)}: has no `%include {unused[0]}` line to swap for {wanted[unused[0]]}"
        )
    return Flattened(
        root=root,
        text="".join(f"{line}\n" for line in out),
        lines=tuple(origins),
        files=tuple(files),
        notes=tuple(notes),
    )


def _pre_notes(
    deferred: list[tuple[Path, int, str, int]], lines: list[str], origins: list[tuple[Path, int]]
) -> list[Note]:
    """A note per deferred absolute include some %pre writes; MissingIncludeError at the first none writes."""
    writers = _pre_written(lines)
    notes: list[Note] = []
    for file, number, target, _ in deferred:
        writer = writers.get(os.path.normpath(target))
        if writer is None:
            raise MissingIncludeError(
                f"{display_path(file)}:{number}: %include {target}: file not found (looked for {target}; "
                "no %pre of this kickstart writes it)"
            )
        pre_file, pre_line = origins[writer]
        at = f"line {pre_line}" if pre_file == file else f"{display_path(pre_file)}:{pre_line}"
        notes.append(
            Note(
                file,
                number,
                f"%include {target}: written at install time by %pre at {at}: not checked",
                target,
            )
        )
    return notes


# Section headers end a %pre body (as pykickstart's sections do); %end is the usual way.
_SECTIONS = ("%pre", "%pre-install", "%post", "%packages", "%traceback", "%onerror", "%anaconda", "%addon")


def _pre_written(lines: list[str]) -> dict[str, int]:
    """Each path a %pre among `lines` writes -> the index of that %pre's header line (the first one wins)."""
    found: dict[str, int] = {}
    header: int | None = None
    interpreter: str | None = None
    body: list[str] = []

    def close() -> None:
        if header is not None:
            for path in written_paths("\n".join(body), interpreter):
                found.setdefault(path, header)

    for index, line in enumerate(lines):
        try:
            words = shlex.split(line, comments=True) if line.lstrip().startswith("%") else []
        except ValueError:
            words = []
        if words and (words[0] == "%end" or words[0] in _SECTIONS):
            close()
            header, interpreter, body = None, None, []
            if words[0] == "%pre":
                header = index
                for i, word in enumerate(words):
                    if word.startswith("--interpreter="):
                        interpreter = word.split("=", 1)[1]
                    elif word == "--interpreter" and i + 1 < len(words):
                        interpreter = words[i + 1]
            continue
        if header is not None:
            body.append(line)
    close()
    return found


def oscap_addon(profile: str) -> str:
    """Anaconda's OpenSCAP add-on section: remediate the installed system to `profile` at install time,
    with the SCAP Security Guide content the installer image carries (content-type scap-security-guide).

    The same two keys as SSG's own RHEL 7 kickstarts (ssg-rhel7-*-ks.cfg). Deliberately no datastream-id
    or xccdf-id: the add-on reads the installer image's SSG, not the host's 0.1.65 whose ids the factory
    can check, and each SSG datastream has one data-stream and one checklist, which the add-on takes by
    default (tests/unit/test_compliance_addon.py checks both against ssg-nondebian)."""
    return f"%addon org_fedora_oscap\n    content-type = scap-security-guide\n    profile = {profile}\n%end\n"


def _with_addon(flat: Flattened, spec: Spec) -> Flattened:
    if spec.compliance is None or not spec.compliance.remediate_at_install:
        return flat
    section = oscap_addon(spec.compliance.profile)
    # Its lines come from the spec (line 0: the spec as a whole), not from any kickstart file.
    origin = (Path(os.path.abspath(spec.source)), 0)
    text = flat.text if flat.text.endswith("\n") or not flat.text else flat.text + "\n"
    added = section.splitlines()
    return Flattened(
        root=flat.root,
        text=text + section,
        lines=(*flat.lines, *([origin] * len(added))),
        files=flat.files,
        notes=flat.notes,
    )


def flatten_for_spec(spec: Spec) -> Flattened:
    """The kickstart exactly as the factory serves it for `spec` (the kernel switch applied, and the
    OpenSCAP add-on when `compliance.remediate_at_install` asks for it)."""
    swaps = KERNEL_SWITCH if spec.keep_uek else None
    try:
        return _with_addon(flatten(spec.kickstart_path, swaps), spec)
    except KickstartInputError as exc:
        if spec.keep_uek and "to swap for" in exc.message:
            raise KickstartInputError(
                f"{display_path(spec.source)}: keep_uek: true, but {exc.message} (see kickstarts/ol72.ks)"
            ) from None
        raise
