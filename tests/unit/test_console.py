"""The serial console: typing with echo check and repair against a fake echoing line editor, and waits
that say what they waited for."""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.console import Console, ConsoleClosed, ConsoleTimeout

LINE = "linux inst.ks=http://10.0.2.2:40123/AbCdEfGhIjKlMnOpQrStUv/ks.cfg inst.text console=ttyS0"


class FakeEditor(threading.Thread):
    """A boot-loader line editor on the far end of a socket: keeps a buffer, echoes what it stores,
    erases with "\\b \\b", and misbehaves as told (faults: char -> 'double' | 'drop' | 'wrong')."""

    def __init__(self, sock: socket.socket, faults: dict[int, str], *, echo_bs: str = "\b \b") -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.faults = dict(faults)  # key index (in received order) -> fault
        self.echo_bs = echo_bs
        self.buffer = ""
        self.entered: str | None = None
        self.keys = 0

    def run(self) -> None:
        while self.entered is None:
            data = self.sock.recv(1)
            if not data:
                return
            ch = data.decode()
            fault = self.faults.pop(self.keys, None)
            self.keys += 1
            if ch == "\r":
                self.entered = self.buffer
                self.sock.sendall(b"\r\n")
            elif ch in "\b\x7f":
                if self.buffer:
                    self.buffer = self.buffer[:-1]
                    self.sock.sendall(self.echo_bs.encode())
            elif fault == "drop":
                continue  # the key never arrives (no echo, nothing stored)
            elif fault == "double":
                self.buffer += ch * 2
                self.sock.sendall((ch * 2).encode())
            elif fault == "wrong":
                self.buffer += "#"
                self.sock.sendall(b"#")
            else:
                self.buffer += ch
                self.sock.sendall(data)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Console, socket.socket]]:
    ours, theirs = socket.socketpair()
    console = Console(ours, tmp_path / "console.log")
    yield console, theirs
    console.close()
    theirs.close()


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({}, id="clean"),
        pytest.param({3: "double"}, id="doubled-char"),
        pytest.param({10: "drop"}, id="lost-char"),
        pytest.param({20: "wrong"}, id="wrong-char"),
        pytest.param({0: "double", 5: "drop", 9: "wrong", 30: "double", 31: "double"}, id="many-faults"),
    ],
)
def test_type_line_repairs_to_the_exact_line(
    pair: tuple[Console, socket.socket], faults: dict[int, str]
) -> None:
    console, theirs = pair
    editor = FakeEditor(theirs, faults)
    editor.start()
    result = console.type_line(LINE, echo_timeout=0.3, settle=0.1)
    editor.join(5)
    assert editor.entered == LINE
    assert result.echoed == LINE
    assert (result.repairs > 0) == any(f in ("double", "wrong") for f in faults.values())


def test_type_line_with_random_faults(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    rng = random.Random(7)
    faults = {i: rng.choice(["double", "drop", "wrong"]) for i in range(200) if rng.random() < 0.1}
    editor = FakeEditor(theirs, faults)
    editor.start()
    console.type_line(LINE, echo_timeout=0.3, settle=0.1)
    editor.join(5)
    assert editor.entered == LINE


def test_type_line_handles_ansi_erase(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    # Some editors erase with cursor-left + erase-to-end-of-line instead of "\b \b".
    editor = FakeEditor(theirs, {4: "double"}, echo_bs="\b\x1b[K")
    editor.start()
    console.type_line(LINE, echo_timeout=0.3, settle=0.1)
    editor.join(5)
    assert editor.entered == LINE


def test_type_line_gives_up_on_a_silent_console(pair: tuple[Console, socket.socket]) -> None:
    console, _theirs = pair
    with pytest.raises(ConsoleTimeout, match="no echo"):
        console.type_line("ab", echo_timeout=0.01, max_repairs=3)


def test_type_line_refuses_control_characters(pair: tuple[Console, socket.socket]) -> None:
    console, _ = pair
    with pytest.raises(ValueError, match="control characters"):
        console.type_line("a\nb")


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
