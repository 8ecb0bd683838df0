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
KILL_LINE = "\x15"  # Ctrl-U: isolinux (and most line editors) clear the whole line
# Cursor movement and erase sequences a line editor may send around an echo (ESC [ ... letter); OVMF's
# console also sends private modes such as ESC [ = 3 h.
_CSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]")
# The start of such a sequence, cut off by the end of a read.
_CSI_PREFIX = re.compile(r"\x1b(\[[0-9;?=]*)?")
# Absolute cursor position: ESC [ row ; col H (ESC [ H = home). GRUB's terminfo writes 9;7, OVMF's 09;07.
_CUP = re.compile(r"\x1b\[(?:(\d*);(\d*))?[Hf]")


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
        self,
        text: str,
        *,
        prompt: str = "boot: ",
        echo_timeout: float = 2.0,
        settle: float = 0.3,
        max_repairs: int = 100,
        screen: bool = False,
    ) -> TypeResult:
        """Type `text` one character at a time, confirm each by its echo, repair mismatches, press Enter.

        `prompt`: what the line editor prints before the line when it redraws it (isolinux: "boot: ").
        `screen`: the editor positions the cursor on a full screen (GRUB's command line): the echo is
        followed with ScreenEcho instead of LineEcho.
        `echo_timeout`: how long one character's echo may take before it is taken as lost and resent.
        `settle`: quiet time required before Enter, so a late (doubled) echo is still seen and repaired.
        """
        if any(not c.isprintable() for c in text):
            raise ValueError("type_line: the line must not contain control characters")
        if text != text.rstrip(" "):
            # A redraw pads the line with blanks: a trailing blank of the line itself cannot be confirmed.
            raise ValueError("type_line: the line must not end with a blank")
        started = time.monotonic()
        # Whatever is still buffered (e.g. the blank after a prompt matched as `boot:`) is not an echo.
        while self._read_echo(0.05):
            pass
        echo: LineEcho | ScreenEcho = ScreenEcho() if screen else LineEcho(prompt)
        repairs = 0
        waits = 0
        settled = False
        while True:
            buffer = echo.buffer
            if buffer == text:
                # Everything echoed: wait for silence so a late duplicate cannot slip past Enter.
                if self._settle(echo, settle, echo_timeout):
                    continue
                break
            if buffer is not None and text.startswith(buffer):
                key = text[len(buffer)]
                settled = False
            elif not settled:
                # Echoes may still be on their way (a late duplicate, the echo of the key after it):
                # judge only a quiet line, else every repair would answer the previous key's echo.
                self._settle(echo, settle, echo_timeout)
                settled = True
                continue
            else:
                repairs += 1
                if repairs > max_repairs:
                    raise ConsoleError(
                        f"typing {text!r}: gave up after {max_repairs} repairs (echo shows {buffer!r})"
                    )
                # Unknown contents (a redraw that did not show the whole line): clear the line.
                key = KILL_LINE if buffer is None else BACKSPACE
            echo.sent(key)
            self.send(key)
            if not self._await_echo(echo, echo_timeout):
                waits += 1
                # A lost key: the loop sends it again. A console that never echoes is an error.
                if waits > max_repairs:
                    raise ConsoleTimeout(
                        f"typing {text!r}: no echo from the serial console for {echo_timeout:.1f} s "
                        f"{max_repairs} times (echo so far: {echo.buffer!r})"
                    )
        self.send("\r")
        return TypeResult(seconds=time.monotonic() - started, repairs=repairs, echoed=text)

    def _settle(self, echo: LineEcho | ScreenEcho, quiet: float, timeout: float) -> bool:
        """Read until nothing arrives for `quiet` seconds; True if anything arrived."""
        arrived = False
        while more := self._read_echo(quiet):
            arrived = True
            echo.feed(more)
            if echo.busy:
                self._await_echo(echo, timeout)  # finish a redraw before listening for silence
        return arrived

    def _await_echo(self, echo: LineEcho | ScreenEcho, timeout: float) -> bool:
        """Read until the echo changed the line (a redraw read to its end), or `timeout` passes."""
        before = echo.updates
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if echo.busy:
                    echo.abandon_redraw()  # its end never came: the line's contents are unknown
                return echo.updates != before
            data = self._read_echo(left)
            if data:
                echo.feed(data)
                if echo.updates != before and not echo.busy:
                    return True

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


class _AnsiStream:
    """Splits serial output into CSI escape sequences and characters, across reads: a sequence cut at the
    end of one read is kept and completed by the next. Subclasses say what a sequence and a character do."""

    _pending: str

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        i = 0
        while i < len(data):
            if data[i] == "\x1b":
                m = _CSI.match(data, i)
                if m is None:
                    if _CSI_PREFIX.fullmatch(data, i):
                        self._pending = data[i:]  # the rest comes with the next read
                        return
                    i += 1  # a lone ESC or a sequence we do not know: layout only
                    continue
                self._csi(m.group(0))
                i = m.end()
                continue
            self._char(data[i])
            i += 1

    def _csi(self, seq: str) -> None:
        raise NotImplementedError

    def _char(self, ch: str) -> None:
        raise NotImplementedError


class LineEcho(_AnsiStream):
    """The boot loader's line buffer, rebuilt from its echo (a pure parser: bytes in, buffer out).

    Two kinds of line editor are followed:
    - plain echo (syslinux 4, most firmware): a printable character appends, a backspace erases (editors
      erase with "\\b \\b" or "\\b ESC[K"), CR/LF of a line wrap are layout only;
    - redraw (isolinux 6, measured on the testbed ISO under TCG): a backspace or Ctrl-U makes it redraw
      the whole line from column 1: `ESC[?25l ESC[1G` prompt, line, blanks over the old tail (wrapped
      with CR CR LF every 80 columns), `ESC[K`, then cursor moves. The text between `ESC[1G` and `ESC[K`
      is the line; if it does not start with the prompt (an editor that shows only the visible end of a
      long line, e.g. after "..."), it is matched against the end of the expected line.

    `buffer` is None when a redraw showed something the expected line does not end with: the caller then
    clears the line (Ctrl-U) and types again.
    """

    def __init__(self, prompt: str) -> None:
        self.prompt = prompt
        self.buffer: str | None = ""
        # The buffer if the last key sent takes effect exactly once (judges redraws that show blanks or
        # only the end of the line).
        self._expected: str | None = ""
        self._pending = ""  # an escape sequence cut by a read boundary
        self._redraw: list[str] | None = None  # the text of a redraw in progress
        self.updates = 0  # how many times the echo changed (or re-showed) the line

    @property
    def busy(self) -> bool:
        return self._redraw is not None or bool(self._pending)

    def sent(self, key: str) -> None:
        """Record the key about to be sent (the expectation a redraw is judged against)."""
        base = self.buffer
        if base is None or key == KILL_LINE:
            self._expected = ""
        elif key in "\b\x7f":
            self._expected = base[:-1]
        else:
            self._expected = base + key

    def abandon_redraw(self) -> None:
        """A redraw that never ended (its end was lost): the buffer is unknown."""
        self._redraw = None
        self._pending = ""
        self.buffer = None
        self.updates += 1

    def _char(self, ch: str) -> None:
        if self._redraw is not None:
            if ch.isprintable():
                self._redraw.append(ch)
        elif ch in "\b\x7f":
            if self.buffer:
                self.buffer = self.buffer[:-1]
            self.updates += 1
        elif ch.isprintable() and self.buffer is not None:
            self.buffer += ch
            self.updates += 1

    def _csi(self, seq: str) -> None:
        if seq in {"\x1b[1G", "\x1b[G"}:
            self._redraw = []  # cursor to column 1: the editor redraws prompt + line
        elif seq in ("\x1b[K", "\x1b[0K") and self._redraw is not None:
            self._end_redraw("".join(self._redraw))
            self._redraw = None
        # Anything else (cursor visibility and moves, erase to end of line outside a redraw) is layout.

    def _end_redraw(self, shown: str) -> None:
        self.updates += 1
        expected = self._expected
        if shown.startswith(self.prompt):
            line = shown[len(self.prompt) :]
            visible = line.rstrip(" ")
            # Blanks after the line overwrite its old tail; the line may itself end with some of them.
            if expected is not None and expected.rstrip(" ") == visible and len(expected) <= len(line):
                self.buffer = expected
            else:
                self.buffer = visible
            return
        tail = shown.rstrip(" ").removeprefix("...")
        if expected is not None and expected.rstrip(" ").endswith(tail):
            self.buffer = expected
        else:
            self.buffer = None


class ScreenEcho(_AnsiStream):
    """A full-screen line editor's line, rebuilt from what it draws (GRUB 2 command line; a pure parser).

    GRUB does not echo a key as a character stream: for every key it moves the cursor to the line's
    place on the screen (ESC [ row ; col H), draws the changed part, and moves the cursor to its new
    place; a backspace draws a blank and moves back, a long line continues at column 1 of the next row.
    Under OVMF every draw comes twice, because `terminal_output serial console` puts GRUB's own serial
    terminal and the firmware console (which OVMF also sends to the serial port) on the same wire,
    interleaved operation by operation (measured: `ESC[9;7H ESC[09;07H e e ESC[9;8H ESC[09;08H`).

    So the line is read off a model of the screen: the cells from where the line starts (the first
    cursor position after typing began) up to the cursor, each time a cursor positioning ends a draw.
    The second copy of a character lands one cell right of the cursor and is overwritten by the next
    key's draw, so it never counts. Text before the first positioning (a prompt's late copy) is skipped.

    `buffer` is None while a needed cell was never drawn (then the caller clears the line and retypes).
    """

    def __init__(self, columns: int = 80) -> None:
        self.columns = columns
        self.buffer: str | None = ""
        self.updates = 0
        self._cells: dict[tuple[int, int], str] = {}
        self._row = 0
        self._col = 0
        self._start: tuple[int, int] | None = None
        self._dirty = False  # drawn since the last cursor positioning: the line may be half drawn
        self._pending = ""

    @property
    def busy(self) -> bool:
        return self._dirty or bool(self._pending)

    def sent(self, key: str) -> None:
        """Nothing to remember: the screen, not the keys, says what the line holds."""

    def abandon_redraw(self) -> None:
        self._dirty = False
        self._pending = ""
        self.buffer = None
        self.updates += 1

    def _char(self, ch: str) -> None:
        if self._start is not None:
            self._draw(ch)

    def _csi(self, seq: str) -> None:
        m = _CUP.fullmatch(seq)
        if m is not None:
            self._row = int(m.group(1) or 1)
            self._col = int(m.group(2) or 1)
            if self._start is None:
                self._start = (self._row, self._col)
            self._dirty = False
            line = self._line()
            # Only a changed line is an echo: GRUB also positions the cursor *before* drawing a key.
            if line != self.buffer or line is None:
                self.buffer = line
                self.updates += 1
        elif seq in ("\x1b[K", "\x1b[0K"):
            for col in range(self._col, self.columns + 1):
                self._cells.pop((self._row, col), None)
        elif seq in ("\x1b[2J", "\x1b[J", "\x1b[0J"):
            self._cells.clear()  # a cleared screen: what was typed is gone from view

    def _draw(self, ch: str) -> None:
        if ch == "\r":
            self._col = 1
        elif ch == "\n":
            self._row += 1
        elif ch in "\b\x7f":
            self._col = max(1, self._col - 1)
        elif ch.isprintable():
            self._cells[(self._row, self._col)] = ch
            self._col += 1
        else:
            return
        self._dirty = True

    def _line(self) -> str | None:
        assert self._start is not None
        row, col = self._start
        end = (self._row, self._col)
        chars: list[str] = []
        while (row, col) < end:
            if col > self.columns:
                row, col = row + 1, 1
                continue
            cell = self._cells.get((row, col))
            if cell is None:
                return None
            chars.append(cell)
            col += 1
        return "".join(chars)


def screen_text(data: str) -> str:
    """Terminal output as plain text: escape sequences dropped, line ends normalised (for matching)."""
    text = _CSI.sub("", data)
    text = re.sub(r"\x1b[^\[]?", "", text)
    return re.sub(r"\r+\n?", "\n", text)
