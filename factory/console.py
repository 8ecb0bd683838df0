"""The serial console: wait for text (every wait says what it waited for), type a line with echo check and
repair, and stream everything received to a transcript file.

Typing is the fix for Packer's VNC keystrokes: one character at a time, each confirmed by its echo. The
echo is the ground truth of the boot loader's line buffer, so a model of that buffer is rebuilt from the
echo stream: a doubled character, a lost one or a wrong one shows up as a difference between the model and
the wanted line, and is repaired with backspaces and retyping before Enter is pressed.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pexpect
import pexpect.fdpexpect

from factory.errors import EXIT_TOOL, FactoryError

BACKSPACE = "\b"
# Cursor movement and erase sequences a line editor may send around an echo (ESC [ ... letter).
_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ConsoleError(FactoryError):
    exit_code = EXIT_TOOL


class ConsoleTimeout(ConsoleError):
    """Nothing matching appeared within the timeout; the message names what was waited for."""


class ConsoleClosed(ConsoleError):
    """The other end went away (QEMU exited)."""


@dataclass(frozen=True)
class TypeResult:
    seconds: float
    # Characters that had to be erased because the echo was doubled, lost or wrong.
    repairs: int
    # The buffer as the echo showed it when Enter was pressed (== the wanted line).
    echoed: str


class Console:
    """A serial console over a connected socket (QEMU's `-chardev socket`), teed to `transcript`."""

    def __init__(self, sock: socket.socket, transcript: Path | None) -> None:
        self._sock = sock
        self._log: IO[str] | None = (
            transcript.open("a", encoding="utf-8", errors="replace") if transcript is not None else None
        )
        self.transcript = transcript
        self._child = pexpect.fdpexpect.fdspawn(
            sock.fileno(), encoding="utf-8", codec_errors="replace", logfile=None, timeout=30
        )
        # pexpect writes what it reads to logfile_read and flushes: the transcript is live.
        self._child.logfile_read = self._log
        self.closed = False

    # ------------------------------------------------------------------ reading
    def expect(self, patterns: Sequence[str | re.Pattern[str]], timeout: float, what: str) -> int:
        """Wait for the first of `patterns` (regexes); return its index. `.match`/`.before` as in pexpect.

        Anchor a pattern's end (e.g. `[^\\r\\n]*\\r*\\n`): a trailing `*` matches as little as is buffered.
        """
        try:
            index: int = self._child.expect(list(patterns), timeout=timeout)
        except pexpect.TIMEOUT:
            tail = self.tail()
            raise ConsoleTimeout(
                f"no {what} on the serial console within {timeout:.0f} s"
                + (f" (last output: {tail!r})" if tail else " (no output at all)")
            ) from None
        except pexpect.EOF:
            self.closed = True
            raise ConsoleClosed(f"the serial console closed while waiting for {what}") from None
        return index

    @property
    def match(self) -> re.Match[str] | None:
        m = self._child.match
        return m if isinstance(m, re.Match) else None

    @property
    def before(self) -> str:
        return str(self._child.before or "")

    def read(self, timeout: float) -> str | None:
        """Whatever arrives within `timeout` seconds: '' if nothing, None once the console is closed."""
        pending = str(self._child.buffer)
        if pending:
            self._child.buffer = ""
            return pending
        if self.closed:
            return None
        try:
            data: str = self._child.read_nonblocking(size=65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF:
            self.closed = True
            return None
        return data

    def tail(self, chars: int = 200) -> str:
        """The last characters received (for error messages)."""
        text = str(self._child.before or "") + str(self._child.buffer or "")
        return text[-chars:].strip()

    # ------------------------------------------------------------------ writing
    def send(self, text: str) -> None:
        try:
            self._child.send(text)
        except OSError as exc:
            self.closed = True
            raise ConsoleClosed(f"cannot write to the serial console: {exc.strerror}") from None

    def type_line(
        self, text: str, *, echo_timeout: float = 2.0, settle: float = 0.3, max_repairs: int = 100
    ) -> TypeResult:
        """Type `text` one character at a time, confirm each by its echo, repair mismatches, press Enter.

        `echo_timeout`: how long one character's echo may take before it is taken as lost and resent.
        `settle`: quiet time required before Enter, so a late (doubled) echo is still seen and repaired.
        """
        if any(c in text for c in "\r\n\b\x1b"):
            raise ValueError("type_line: the line must not contain control characters")
        started = time.monotonic()
        buffer = ""  # the boot loader's line buffer, as its echo shows it
        repairs = 0
        waits = 0
        while True:
            if buffer == text:
                # Everything echoed: wait for silence so a late duplicate cannot slip past Enter.
                more = self._read_echo(settle)
                if more:
                    buffer = _apply_echo(buffer, more)
                    continue
                break
            if text.startswith(buffer):
                self.send(text[len(buffer)])
            else:
                repairs += 1
                if repairs > max_repairs:
                    raise ConsoleError(
                        f"typing {text!r}: gave up after {max_repairs} repairs (echo shows {buffer!r})"
                    )
                self.send(BACKSPACE)
            echo = self._read_echo(echo_timeout)
            if not echo:
                waits += 1
                # A lost key: the loop sends it again. A console that never echoes is an error.
                if waits > max_repairs:
                    raise ConsoleTimeout(
                        f"typing {text!r}: no echo from the serial console for {echo_timeout:.1f} s "
                        f"{max_repairs} times (echo so far: {buffer!r})"
                    )
                continue
            buffer = _apply_echo(buffer, echo)
        self.send("\r")
        return TypeResult(seconds=time.monotonic() - started, repairs=repairs, echoed=buffer)

    def _read_echo(self, timeout: float) -> str:
        data = self.read(timeout)
        if data is None:
            raise ConsoleClosed("the serial console closed while typing")
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
        try:
            self._sock.close()
        finally:
            if self._log is not None and not self._log.closed:
                self._log.close()


def _apply_echo(buffer: str, echo: str) -> str:
    """The line buffer after the editor echoed `echo`: printable characters append, a backspace erases.

    Editors erase with "\\b \\b" (back, blank, back): applied in order that is pop, append ' ', pop.
    """
    for ch in _CSI.sub("", echo):
        if ch in "\b\x7f":
            buffer = buffer[:-1]
        elif ch in "\r\n\x00\x07":
            continue
        elif ch.isprintable():
            buffer += ch
    return buffer
