"""Inline every `%include` of a kickstart, keeping a map from each flattened line to its real file:line.

Why flatten ourselves instead of letting pykickstart follow includes: pykickstart reports an error inside an
included file with that file's line number but not its name, and the installer fetching a kickstart over HTTP
cannot follow relative includes at all. So the install stage serves `Flattened.text`, and the validator parses
it with followIncludes=False and maps every line number back through `Flattened.origin`.

Relative `%include` paths resolve against the including file's folder (pykickstart first tries the current
directory, which makes the answer depend on where you stand). A missing include is an error, even an absolute
path that a `%pre` script would create at install time: the factory serves one self-contained kickstart.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from factory.errors import InputError
from factory.spec import Spec, read_text_file

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
class Flattened:
    """A kickstart with every %include inlined, and where each of its lines came from."""

    root: Path
    text: str
    # lines[i] is the (file, 1-based line) of flattened line i + 1.
    lines: tuple[tuple[Path, int], ...]
    # Every file read, root first, each once: the inputs of the validate/install stages.
    files: tuple[Path, ...]

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
    )


def flatten_for_spec(spec: Spec) -> Flattened:
    """The kickstart exactly as the factory serves it for `spec` (the kernel switch applied)."""
    swaps = KERNEL_SWITCH if spec.keep_uek else None
    try:
        return flatten(spec.kickstart_path, swaps)
    except KickstartInputError as exc:
        if spec.keep_uek and "to swap for" in exc.message:
            raise KickstartInputError(
                f"{display_path(spec.source)}: keep_uek: true, but {exc.message} (see kickstarts/ol72.ks)"
            ) from None
        raise
