"""The serial console: typing with echo check and repair against a fake echoing line editor, and waits
that say what they waited for."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.vm.console import Console, ConsoleClosed, ConsoleTimeout, LineEcho

LINE = "linux inst.ks=http://10.0.2.2:40123/AbCdEfGhIjKlMnOpQrStUv/ks.cfg inst.text console=ttyS0"
# Longer than isolinux's 80-column screen (with the prompt): wraps twice, and every repair is a redraw.
LONG_LINE = (
    "linux inst.ks=http://10.0.2.2:40123/AbCdEfGhIjKlMnOpQrStUv/ks.cfg inst.text "
    "inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 console=ttyS0 ignore_loglevel testbed.fail=crash"
)
PROMPT = "boot: "
COLUMNS = 80


def isolinux6_redraw(line: str, old_len: int) -> bytes:
    """isolinux 6.04's redraw after a backspace or Ctrl-U, as captured from the testbed ISO under TCG (the
    captures below check this model byte for byte): hide the cursor, column 1, prompt + line + blanks
    over the old tail with CR CR LF after the 81st character and every 80 after it (also when the last
    row is just full), erase to end of line, CR, cursor up/right to (prompt + line) as row, column of an
    80-column screen, show the cursor."""
    body = PROMPT + line + " " * max(old_len - len(line), 0)
    rows = [body[:81]] + [body[i : i + COLUMNS] for i in range(81, len(body), COLUMNS)]
    if len(body) >= 81 and (len(body) - 81) % COLUMNS == 0:
        rows.append("")
    row, col = divmod(len(PROMPT) + len(line), COLUMNS)
    up = len(rows) - 1 - row
    moves = (f"\x1b[{up}A" if up > 0 else "") + (f"\x1b[{col}C" if col else "")
    return ("\x1b[?25l\x1b[1G" + "\r\r\n".join(rows) + "\x1b[K\r" + moves + "\x1b[?25h").encode()


class FakeEditor(threading.Thread):
    """A boot-loader line editor on the far end of a socket: keeps a buffer, echoes what it stores,
    and misbehaves as told (faults: key index -> 'double' | 'drop' | 'wrong').

    style "plain": erases with "\\b \\b" (syslinux 4); "ansi": "\\b ESC[K"; "isolinux6": plain echo of
    typed characters with CR CR LF ESC[K at the 80th column, and a whole-line redraw on backspace and
    Ctrl-U (isolinux 6.04, bytes as captured on the testbed ISO)."""

    def __init__(self, sock: socket.socket, faults: dict[int, str], *, style: str = "plain") -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.faults = dict(faults)  # key index (in received order) -> fault
        self.style = style
        self.buffer = ""
        self.entered: str | None = None
        self.keys = 0

    def _erase(self, old: str) -> None:
        if self.style == "isolinux6":
            self.sock.sendall(isolinux6_redraw(self.buffer, len(old)))
        else:
            self.sock.sendall(("\b \b" if self.style == "plain" else "\b\x1b[K").encode())

    def _store(self, chars: str) -> None:
        for ch in chars:
            self.buffer += ch
            echo = ch
            # Measured: the wrap comes after every 80th character of the line (the prompt not counted).
            if self.style == "isolinux6" and len(self.buffer) % COLUMNS == 0:
                echo += "\r\r\n\x1b[K"
            self.sock.sendall(echo.encode())

    def run(self) -> None:
        while self.entered is None:
            data = self.sock.recv(1)
            if not data:
                return
            ch = data.decode()
            fault = self.faults.pop(self.keys, None)
            self.keys += 1
            old = self.buffer
            if fault == "drop":
                continue  # the key never arrives (no echo, nothing stored)
            if ch == "\r":
                self.entered = self.buffer
                self.sock.sendall(b"\r\n")
            elif ch in "\b\x7f":
                for _ in range(2 if fault == "double" else 1):  # a doubled key is two keys
                    if self.buffer:
                        old = self.buffer
                        self.buffer = self.buffer[:-1]
                        self._erase(old)
            elif ch == "\x15":
                self.buffer = ""
                self._erase(old)
            elif fault == "double":
                self._store(ch * 2)
            elif fault == "wrong":
                self._store("#")
            else:
                self._store(ch)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Console, socket.socket]]:
    ours, theirs = socket.socketpair()
    console = Console(ours, tmp_path / "console.log")
    yield console, theirs
    console.close()
    theirs.close()


STYLES = ["plain", "ansi", "isolinux6"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("line", [pytest.param(LINE, id="short"), pytest.param(LONG_LINE, id="long")])
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({}, id="clean"),
        pytest.param({3: "double"}, id="doubled-char"),
        pytest.param({10: "drop"}, id="lost-char"),
        pytest.param({20: "wrong"}, id="wrong-char"),
        pytest.param({78: "wrong", 79: "double"}, id="faults-at-the-wrap"),
        pytest.param({0: "double", 5: "drop", 9: "wrong", 30: "double", 31: "double"}, id="many-faults"),
    ],
)
def test_type_line_repairs_to_the_exact_line(
    pair: tuple[Console, socket.socket], faults: dict[int, str], line: str, style: str
) -> None:
    console, theirs = pair
    editor = FakeEditor(theirs, faults, style=style)
    editor.start()
    result = console.type_line(line, echo_timeout=0.15, settle=0.05)
    editor.join(5)
    assert editor.entered == line
    assert result.echoed == line
    assert (result.repairs > 0) == any(f in ("double", "wrong") for f in faults.values())


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", [7, 23])
def test_type_line_with_random_faults(pair: tuple[Console, socket.socket], style: str, seed: int) -> None:
    # Faults also hit the repair keys themselves: a doubled backspace, a lost one, a lost Ctrl-U.
    console, theirs = pair
    rng = random.Random(seed)
    faults = {i: rng.choice(["double", "drop", "wrong"]) for i in range(400) if rng.random() < 0.1}
    editor = FakeEditor(theirs, faults, style=style)
    editor.start()
    console.type_line(LONG_LINE, echo_timeout=0.15, settle=0.05)
    editor.join(5)
    assert editor.entered == LONG_LINE


def test_type_line_skips_the_prompt_residue(pair: tuple[Console, socket.socket]) -> None:
    # `boot: ?` may match before the blank arrives: that blank is not the echo of a typed key.
    console, theirs = pair
    theirs.sendall(b"boot:")
    console.expect([r"boot: ?"], 2, "the prompt")
    theirs.sendall(b" ")
    editor = FakeEditor(theirs, {}, style="isolinux6")
    editor.start()
    result = console.type_line("linux a=b", echo_timeout=0.15, settle=0.05)
    editor.join(5)
    assert editor.entered == "linux a=b"
    assert result.repairs == 0


# Bytes isolinux 6.04 sent on the testbed ISO's serial console (QEMU TCG) after one key each, while
# typing CAPTURED_LINE: plain echo with a wrap after the 80th and 160th character, a whole-line redraw
# for a backspace or Ctrl-U.
CAPTURED_LINE = "linux " + "".join(chr(97 + i % 26) if i % 10 else str(i // 10 % 10) for i in range(170))
CAPTURED_WRAP_ECHO = {80: "v\r\r\n\x1b[K", 160: "x\r\r\n\x1b[K"}
BS_176 = (
    "\x1b[?25l\x1b[1Gboot: linux 0bcdefghij1lmnopqrst2vwxyzabcd3fghijklmn4pqrstuvwx5zabcdefgh6jklmnopq"
    "\r\r\nr7tuvwxyzab8defghijkl9nopqrstuv0xyzabcdef1hijklmnop2rstuvwxyz3bcdefghij4lmnopqrs"
    "\r\r\nt5vwxyzabcd6fghijklm \x1b[K\r\x1b[21C\x1b[?25h"
)
BS_155 = (
    "\x1b[?25l\x1b[1Gboot: linux 0bcdefghij1lmnopqrst2vwxyzabcd3fghijklmn4pqrstuvwx5zabcdefgh6jklmnopq"
    "\r\r\nr7tuvwxyzab8defghijkl9nopqrstuv0xyzabcdef1hijklmnop2rstuvwxyz3bcdefghij4lmnopqr \r\r\n"
    "\x1b[K\r\x1b[?25h"
)
BS_154 = (
    "\x1b[?25l\x1b[1Gboot: linux 0bcdefghij1lmnopqrst2vwxyzabcd3fghijklmn4pqrstuvwx5zabcdefgh6jklmnopq"
    "\r\r\nr7tuvwxyzab8defghijkl9nopqrstuv0xyzabcdef1hijklmnop2rstuvwxyz3bcdefghij4lmnopq "
    "\x1b[K\r\x1b[79C\x1b[?25h"
)
CTRL_U_96 = "\x1b[?25l\x1b[1Gboot:" + " " * 76 + "\r\r\n" + " " * 21 + "\x1b[K\r\x1b[1A\x1b[6C\x1b[?25h"
CAPTURED_REDRAWS = [
    pytest.param(176, BS_176, 175, id="backspace-3-rows"),
    pytest.param(155, BS_155, 154, id="blank-in-column-80"),
    pytest.param(154, BS_154, 153, id="backspace-2-rows"),
    pytest.param(96, CTRL_U_96, 0, id="ctrl-u"),
]


@pytest.mark.parametrize(("typed", "redraw", "left"), CAPTURED_REDRAWS)
def test_fake_isolinux_matches_the_capture(typed: int, redraw: str, left: int) -> None:
    assert isolinux6_redraw(CAPTURED_LINE[:left], typed).decode() == redraw


@pytest.mark.parametrize(("typed", "redraw", "left"), CAPTURED_REDRAWS)
@pytest.mark.parametrize("split", [None, 1, 7, 60])
def test_line_echo_reads_captured_isolinux_redraws(
    typed: int, redraw: str, left: int, split: int | None
) -> None:
    echo = LineEcho(PROMPT)
    for n, ch in enumerate(CAPTURED_LINE[:typed], start=1):
        echo.sent(ch)
        echo.feed(CAPTURED_WRAP_ECHO.get(n, ch))
    assert echo.buffer == CAPTURED_LINE[:typed]
    echo.sent("\x15" if left == 0 else "\b")
    # Reads end anywhere, also inside an escape sequence or inside the redraw.
    parts = [redraw] if split is None else [redraw[i : i + split] for i in range(0, len(redraw), split)]
    for part in parts:
        echo.feed(part)
    assert not echo.busy
    assert echo.buffer == CAPTURED_LINE[:left]


def test_line_echo_matches_a_partial_redraw_against_the_expected_end() -> None:
    # An editor that shows only the visible end of a long line ("..." + tail).
    echo = LineEcho(PROMPT)
    echo.feed("linux abcdefgh")
    echo.sent("\b")
    echo.feed("\x1b[1G...defg \x1b[K")
    assert echo.buffer == "linux abcdefg"
    echo.sent("\b")
    echo.feed("\x1b[1G...xyz \x1b[K")  # not the end we expect: the contents are unknown
    assert echo.buffer is None


def test_type_line_gives_up_on_a_silent_console(pair: tuple[Console, socket.socket]) -> None:
    console, _theirs = pair
    with pytest.raises(ConsoleTimeout, match="no echo"):
        console.type_line("ab", echo_timeout=0.01, max_repairs=3)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        pytest.param("a\nb", "control characters", id="newline"),
        pytest.param("a\x15b", "control characters", id="ctrl-u"),
        pytest.param("a b ", "end with a blank", id="trailing-blank"),
    ],
)
def test_type_line_refuses_lines_it_cannot_confirm(
    pair: tuple[Console, socket.socket], line: str, why: str
) -> None:
    console, _ = pair
    with pytest.raises(ValueError, match=why):
        console.type_line(line)


def test_expect_timeout_says_what_it_waited_for(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    theirs.sendall(b"SeaBIOS\r\n")
    with pytest.raises(
        ConsoleTimeout, match=r"no the boot: prompt on the serial console within 0 s.*SeaBIOS"
    ):
        console.expect([r"boot:"], 0.2, "the boot: prompt")


def test_expect_reports_a_closed_console(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    theirs.close()
    with pytest.raises(ConsoleClosed, match="while waiting for the marker"):
        console.expect([r"marker"], 2, "the marker")


def test_transcript_streams_everything_received(pair: tuple[Console, socket.socket], tmp_path: Path) -> None:
    console, theirs = pair
    theirs.sendall(b"hello\r\nboot: ")
    console.expect([r"boot: "], 2, "the prompt")
    # Written and flushed as received, before the console is closed.
    assert (tmp_path / "console.log").read_bytes() == b"hello\r\nboot: "
    theirs.sendall(b"more")
    assert console.read(2) == "more"
    theirs.close()
    assert console.read(2) is None
