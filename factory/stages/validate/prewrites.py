"""Which files a kickstart's %pre scripts write: the targets of `%include /tmp/...` made at install time.

A common kickstart pattern computes settings in %pre (`echo "network ..." > /tmp/net-include`, `cat >
/tmp/part-include <<EOF`) and includes the result; anaconda runs every %pre before it reads the includes. The
factory cannot check such a file, but it can tell it apart from a typo: the path is one a %pre writes.

Shell scripts are read word by word (shlex, as a POSIX shell splits them): redirections (`>`, `>>`, `>|`,
`&>`), `tee`, `cp`/`mv`/`install`/`ln` destinations, `touch`, `curl -o`, `wget -O`, `dd of=`, with simple
`NAME=value` variables substituted; here-document bodies are data, not commands. Python scripts
(`--interpreter=...python...`): `open("/path", "w"|"a"...)`. A path the reading cannot resolve (an unknown
variable, a command substitution) counts as not written: the include then stays an error, never a silent pass.
"""

from __future__ import annotations

import posixpath
import re
import shlex

_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", ">&"})
_SEPARATORS = frozenset({";", ";;", "&&", "||", "|", "&", "(", ")", "|&"})
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(?P<word>[A-Za-z_][\w]*)\1")
_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_]\w*)=(?P<value>.*)$")
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)\}|(?P<plain>[A-Za-z_]\w*))")
_PY_OPEN = re.compile(r"""\bopen\(\s*(['"])(?P<path>/[^'"]+)\1\s*,\s*(['"])[^'"]*[wax+][^'"]*\3""")
# Commands whose last argument is where they write.
_COPIERS = frozenset({"cp", "mv", "install", "ln", "rsync"})


def _logical_lines(script: str) -> list[str]:
    """Command lines: continuations joined, here-document bodies left out."""
    out: list[str] = []
    pending = ""
    heredoc: list[str] = []  # delimiters still to reach, in order
    for raw in script.splitlines():
        if heredoc:
            if raw.strip() == heredoc[0]:
                heredoc.pop(0)
            continue
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        out.append(line)
        heredoc += [m["word"] for m in _HEREDOC.finditer(line)]
    if pending:
        out.append(pending)
    return out


def _words(line: str) -> list[str] | None:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return None  # unbalanced quotes: nothing reliable to read on this line


def _expand(word: str, variables: dict[str, str]) -> str | None:
    """`word` with known $NAME/${NAME} substituted; None when something stays unknown."""

    def sub(m: re.Match[str]) -> str:
        name = m["braced"] or m["plain"]
        return variables.get(name, "\0")

    value = _VAR.sub(sub, word)
    return None if "\0" in value or "$" in value or "`" in value else value


def _command_targets(words: list[str]) -> list[str]:
    """What one simple command (redirections already removed) writes by its own arguments."""
    while words and _ASSIGN.match(words[0]):
        words = words[1:]
    if not words:
        return []
    name, args = posixpath.basename(words[0]), words[1:]
    plain = [a for a in args if not a.startswith("-")]
    if name in {"tee", "touch"}:
        return plain
    if name in _COPIERS and len(plain) >= 2:
        dest, sources = plain[-1], plain[:-1]
        # A destination folder receives each source by its own name; without a trailing slash it may be
        # either, so both readings count.
        inside = [posixpath.join(dest, posixpath.basename(s.rstrip("/"))) for s in sources]
        return inside if dest.endswith("/") else [dest, *inside]
    if name == "dd":
        return [a[3:] for a in args if a.startswith("of=")]
    flags = {"curl": ("-o", "--output"), "wget": ("-O", "--output-document")}.get(name)
    if flags:
        found = [args[i + 1] for i, a in enumerate(args[:-1]) if a in flags]
        return found + [a.split("=", 1)[1] for a in args if a.startswith(f"{flags[1]}=")]
    return []


def _shell_written(script: str) -> set[str]:
    written: set[str] = set()
    variables: dict[str, str] = {}
    for line in _logical_lines(script):
        tokens = _words(line)
        if tokens is None:
            continue
        command: list[str] = []
        for i, token in enumerate([*tokens, ";"]):
            if token in _SEPARATORS:
                if len(command) >= 1 and all(_ASSIGN.match(w) for w in command):
                    for w in command:  # NAME=value on its own: a shell variable from here on
                        m = _ASSIGN.match(w)
                        assert m is not None
                        value = _expand(m["value"], variables)
                        if value is not None:
                            variables[m["name"]] = value
                else:
                    written.update(t for t in (_expand(w, variables) for w in _command_targets(command)) if t)
                command = []
            elif token in _REDIRECTS:
                if i + 1 < len(tokens) and not (token == ">&" and tokens[i + 1].isdigit()):
                    target = _expand(tokens[i + 1], variables)
                    if target:
                        written.add(target)
                if command and command[-1].isdigit():
                    command.pop()  # the file descriptor of "2>"
            elif i > 0 and tokens[i - 1] in _REDIRECTS | {"<", "<<", "<<<"}:
                continue  # a redirection's operand is not an argument
            else:
                command.append(token)
    return written


def written_paths(script: str, interpreter: str | None = None) -> set[str]:
    """Absolute, normalised paths `script` (a %pre body) writes, as far as can be read without running it."""
    if interpreter and "python" in posixpath.basename(interpreter):
        found = {m["path"] for m in _PY_OPEN.finditer(script)}
    elif interpreter and posixpath.basename(interpreter) not in ("sh", "bash", "ash", "dash", "ksh"):
        return set()  # another language: nothing known is claimed
    else:
        found = _shell_written(script)
    return {posixpath.normpath(p) for p in found if p.startswith("/")}
