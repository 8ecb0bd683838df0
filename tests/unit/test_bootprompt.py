"""The boot loader on the serial console: GRUB's menu and command line recognised in real captures, and
the boot line typed into a fake GRUB with echo check and repair.

tests/data/grub/ holds serial transcripts recorded on this project's machine: the testbed ISO (its own
GRUB 2.06-13+deb12u2 EFI image, `terminal_output serial console`) booted with Debian's OVMF under QEMU TCG.
- ovmf-menu.bin: from power-on to the drawn menu (every draw twice: GRUB's serial terminal and OVMF's
  console, which OVMF also sends to the serial port);
- ovmf-cmdline-edit.bin: at `grub>`, typing `echo LABEL=A\\x20B 'C\\x20D' abc...` (wrapping at column 80)
  and three backspaces, up to (not including) Enter;
- ovmf-boot.bin: menu, `c`, typing linuxefi/initrdefi/boot, until the kernel's first line.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from el7iso import EL7_EFIBOOT_GRUB_CFG, make_el7_iso

from factory.errors import InstallError
from factory.stages.install import bootprompt
from factory.stages.install.bootprompt import BootLine
from factory.stages.media import media
from factory.vm.console import Console, ConsoleTimeout, ScreenEcho, screen_text

DATA = Path(__file__).resolve().parents[1] / "data" / "grub"
MENU = (DATA / "ovmf-menu.bin").read_bytes()
EDIT = (DATA / "ovmf-cmdline-edit.bin").read_bytes()
BOOT = (DATA / "ovmf-boot.bin").read_bytes()
# What was typed in ovmf-cmdline-edit.bin, and what its three backspaces left.
EDIT_TYPED = (
    "echo LABEL=A\\x20B 'C\\x20D' abcdefghijklmnopqrstuvwxyz0123456789"
    "abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"
)
EDIT_LEFT = EDIT_TYPED[:-3]
BOOT_LINUX = "linuxefi /images/pxeboot/vmlinuz console=ttyS0 'LABEL=A\\x20B'"
# GRUB's command-line screen after `c` (the first part of the capture after the menu, both copies).
CMDLINE_SCREEN = BOOT[len(MENU) : BOOT.index(b"grub>grub>  ") + len(b"grub>grub>  ")]
COLUMNS = 80


def _chunks(data: bytes, size: int) -> Iterator[str]:
    for i in range(0, len(data), size):
        yield data[i : i + size].decode("latin-1")


# --- the captures ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 64, 100000], ids=lambda n: f"reads-of-{n}")
def test_screen_echo_reads_the_captured_edit(size: int) -> None:
    # Split reads cut escape sequences and doubled characters apart: the line must not depend on it.
    echo = ScreenEcho()
    for chunk in _chunks(EDIT, size):
        echo.feed(chunk)
    assert not echo.busy
    assert echo.buffer == EDIT_LEFT


def test_screen_echo_follows_the_captured_edit_key_by_key() -> None:
    # After each key's last cursor positioning the line is the typed prefix (no half-drawn state counts).
    echo = ScreenEcho()
    seen: list[str] = []
    for chunk in _chunks(EDIT, 1):
        echo.feed(chunk)
        if not echo.busy and echo.buffer is not None and (not seen or seen[-1] != echo.buffer):
            seen.append(echo.buffer)
    typed_prefixes = [EDIT_TYPED[:n] for n in range(1, len(EDIT_TYPED) + 1)]
    erased = [EDIT_TYPED[:-n] for n in (1, 2, 3)]
    assert [s for s in seen if s] == typed_prefixes + erased


def test_screen_echo_counts_only_a_changed_line_as_an_echo() -> None:
    # GRUB moves the cursor to where the key goes before drawing it: that positioning is no echo yet,
    # else the typist would send the next key (or this one again) before the draw arrives.
    echo = ScreenEcho()
    echo.feed("grub>grub>  \x1b[9;7H\x1b[09;07Hll\x1b[9;8H\x1b[09;08H")
    assert (echo.buffer, echo.updates) == ("l", 1)
    echo.feed("\x1b[9;8H\x1b[09;08H")  # the next key's positioning, its draw still on the way
    assert (echo.buffer, echo.updates, echo.busy) == ("l", 1, False)
    echo.feed("i")
    assert echo.busy
    echo.feed("i\x1b[9;9H")
    assert (echo.buffer, echo.updates, echo.busy) == ("li", 2, False)


def test_screen_echo_reads_the_captured_kernel_line() -> None:
    start = BOOT.index(b"grub>grub>  ")
    end = BOOT.index(b"\r\n\r\r\n\r", start)
    echo = ScreenEcho()
    echo.feed(BOOT[start:end].decode("latin-1"))
    assert echo.buffer == BOOT_LINUX


def test_screen_text_of_the_menu() -> None:
    text = screen_text(MENU.decode("latin-1"))
    assert "GNU GRUB  version 2.06" in text
    assert "Install TESTBED 1" in text
    assert "\x1b" not in text


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Console, socket.socket]]:
    ours, theirs = socket.socketpair()
    console = Console(ours, tmp_path / "console.log")
    yield console, theirs
    console.close()
    theirs.close()


def _send_slowly(sock: socket.socket, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        sock.sendall(data[i : i + size])


@pytest.mark.parametrize(
    ("screen", "loader"),
    [
        pytest.param(MENU, "grub-menu", id="grub-menu-captured"),
        pytest.param(b"\r\nISOLINUX 6.04 20200816 ETCD Copyright (C) 1994-2015 H. Peter Anvin et al"
                     b"\r\nboot: ", "isolinux", id="isolinux-boot-prompt"),
        pytest.param(CMDLINE_SCREEN, "grub-cmdline", id="grub-cmdline-without-menu"),
        pytest.param(b"\x1b[2J\x1b[01;01HWelcome to GRUB!\r\n\r\n"
                     b"error: file `/EFI/BOOT/normal.mod' not found.\r\n"
                     b"Entering rescue mode...\r\ngrub rescue> ", "grub-rescue", id="grub-rescue"),
    ],
)  # fmt: skip
def test_wait_for_screen_names_the_loader(
    pair: tuple[Console, socket.socket], screen: bytes, loader: str
) -> None:
    console, theirs = pair
    sender = threading.Thread(target=_send_slowly, args=(theirs, screen, 7))
    sender.start()
    name, _ = bootprompt.wait_for_screen(console, 5)
    while sender.is_alive():  # the rest of the screen, so the sender is not left blocked
        console.read(0.05)
    assert name == loader


def test_wait_for_screen_times_out_naming_what_it_waited_for(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    theirs.sendall(b'BdsDxe: failed to load Boot0001 "UEFI QEMU DVD-ROM QM00003 ": Not Found\r\n')
    with pytest.raises(ConsoleTimeout, match=r"no boot loader prompt .*GRUB menu.* within 1 s.*Not Found"):
        bootprompt.wait_for_screen(console, 1)


# --- a fake GRUB on the other end of the socket -------------------------------------------------------------


class FakeGrub(threading.Thread):
    """GRUB 2.06's menu and command line as they show on OVMF's serial port (`doubled`: GRUB's serial
    terminal and the firmware console both, operation by operation, as captured) or on a serial-only
    terminal. Keys may be doubled, dropped or replaced (faults: key index -> fault); `errors` maps a
    command's first word to the GRUB error it prints."""

    def __init__(
        self, sock: socket.socket, *, doubled: bool = True, faults: dict[int, str] | None = None,
        errors: dict[str, str] | None = None, menu: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.sock = sock
        self.doubled = doubled
        self.faults = dict(faults or {})
        self.errors = dict(errors or {})
        self.menu = menu
        self.commands: list[str] = []
        self.row = 9
        self.buffer = ""
        self.keys = 0

    def _goto(self, index: int) -> str:
        # The line starts after "grub> " (6 columns) and wraps at column 80.
        row, col = self.row + (6 + index) // COLUMNS, (6 + index) % COLUMNS + 1
        serial = f"\x1b[{row};{col}H"
        return serial + (f"\x1b[{row:02d};{col:02d}H" if self.doubled else "")

    def _twice(self, text: str) -> str:
        return text * 2 if self.doubled else text

    def _put(self, index: int, ch: str) -> str:
        col = (6 + index) % COLUMNS + 1
        return self._twice(ch + ("\r\n\r" if col >= COLUMNS - 1 else ""))

    def _prompt(self) -> None:
        self.sock.sendall(self._twice("grub>").encode() + self._twice(" ").encode())

    def _key(self, ch: str) -> None:
        n = len(self.buffer)
        if ch in "\b\x7f":
            if n:
                self.buffer = self.buffer[:-1]
                g = self._goto(n - 1)
                self.sock.sendall((g + g + self._put(n - 1, " ") + g + g).encode())
        elif ch == "\x15":
            g = self._goto(0)
            blanks = "".join(self._put(i, " ") for i in range(n))
            self.buffer = ""
            self.sock.sendall((g + blanks + g).encode())
        else:
            self.buffer += ch
            self.sock.sendall((self._goto(n) + self._put(n, ch) + self._goto(n + 1)).encode())

    def _enter(self) -> None:
        command, self.buffer = self.buffer, ""
        self.commands.append(command)
        out = self._twice("\r\n\r") * 2
        self.row += 1 + (6 + len(command)) // COLUMNS
        word = command.split(" ", 1)[0]
        if word in self.errors:
            out += self._twice(f"error: {self.errors[word]}.\r\n\r")
            self.row += 1
        self.sock.sendall(out.encode())
        if command != "boot":
            self._prompt()

    def run(self) -> None:
        self.sock.sendall(MENU if self.menu else b"")
        if self.menu:
            while self.sock.recv(1) != b"c":
                pass
        self.sock.sendall(CMDLINE_SCREEN[: -len(b"grub>grub>  ")])
        self._prompt()
        while not self.commands or self.commands[-1] != "boot":
            data = self.sock.recv(1)
            if not data:
                return
            ch = data.decode()
            fault = self.faults.pop(self.keys, None)
            self.keys += 1
            if fault == "drop":
                continue
            if ch == "\r":
                self._enter()
            elif fault == "double":
                self._key(ch)
                self._key(ch)
            elif fault == "wrong" and ch.isprintable():
                self._key("#")
            else:
                self._key(ch)


def test_fake_grub_matches_the_capture() -> None:
    # The fake's drawing is the captured one, byte for byte (typing, the wrap at column 80, backspaces).
    ours, theirs = socket.socketpair()
    fake = FakeGrub(theirs)
    fake.buffer = ""
    with ours, theirs:
        for ch in EDIT_TYPED + "\b\b\b":
            fake._key(ch)
        theirs.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := ours.recv(65536):
            got += chunk
    assert got == EDIT[len(b"grub>grub>  ") :]


LINE = BootLine(
    isolinux="linux inst.ks=http://10.0.2.2:40123/ks.cfg inst.text console=ttyS0",
    grub=(
        "linuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=TESTBED\\x201\\x20x86_64 quiet "
        "console=ttyS0,115200 inst.ks=http://10.0.2.2:40123/AbCdEfGhIjKlMnOpQrStUv/ks.cfg inst.text "
        "console=ttyS0 'testbed.note=a b'",
        "initrdefi /images/pxeboot/initrd.img",
        "boot",
    ),
)


@pytest.fixture
def fast_typing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short echo waits for the fake (it answers at once), as test_console does."""
    original = Console.type_line

    def quick(self: Console, text: str, **kwargs: object) -> object:
        kwargs.setdefault("echo_timeout", 0.15)
        kwargs.setdefault("settle", 0.05)
        return original(self, text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Console, "type_line", quick)
    monkeypatch.setattr(bootprompt, "MENU_QUIET_S", 0.05)


@pytest.mark.usefixtures("fast_typing")
@pytest.mark.parametrize("doubled", [True, False], ids=["ovmf-doubled", "serial-only"])
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({}, id="clean"),
        pytest.param({3: "double"}, id="doubled-key"),
        pytest.param({10: "drop"}, id="lost-key"),
        pytest.param({20: "wrong"}, id="wrong-key"),
        pytest.param({72: "wrong", 73: "double", 74: "drop"}, id="faults-at-the-wrap"),
        pytest.param({0: "double", 5: "drop", 9: "wrong", 150: "double", 151: "wrong"}, id="many-faults"),
    ],
)
def test_boot_types_every_grub_command_exactly(
    pair: tuple[Console, socket.socket], doubled: bool, faults: dict[int, str]
) -> None:
    console, theirs = pair
    grub = FakeGrub(theirs, doubled=doubled, faults=faults)
    grub.start()
    outcome = bootprompt.boot(console, LINE, 10)
    grub.join(5)
    assert grub.commands == list(LINE.grub or ())
    assert outcome.loader == "grub-menu"
    assert (outcome.repairs > 0) == any(f in ("double", "wrong") for f in faults.values())


@pytest.mark.usefixtures("fast_typing")
def test_boot_at_grub_cmdline_without_menu(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    grub = FakeGrub(theirs, menu=False)
    grub.start()
    outcome = bootprompt.boot(console, LINE, 10)
    grub.join(5)
    assert outcome.loader == "grub-cmdline"
    assert grub.commands == list(LINE.grub or ())


@pytest.mark.usefixtures("fast_typing")
def test_grub_error_ends_the_boot_quoting_grub(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    grub = FakeGrub(theirs, errors={"linuxefi": "file `/images/pxeboot/vmlinuz' not found"})
    grub.start()
    with pytest.raises(
        InstallError, match=r"\(boot-loader\): GRUB: error: file `/images/pxeboot/vmlinuz' not found"
    ):
        bootprompt.boot(console, LINE, 10)
    assert len(grub.commands) == 1  # nothing typed after the failed command


def test_grub_rescue_is_a_boot_loader_error(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    theirs.sendall(
        b"error: file `/EFI/BOOT/normal.mod' not found.\r\nEntering rescue mode...\r\ngrub rescue> "
    )
    with pytest.raises(InstallError, match=r"\(boot-loader\): GRUB stopped at its rescue prompt"):
        bootprompt.boot(console, LINE, 5)


def test_grub_without_a_grub_cfg_plan_is_a_boot_loader_error(pair: tuple[Console, socket.socket]) -> None:
    console, theirs = pair
    theirs.sendall(MENU)
    with pytest.raises(InstallError, match=r"\(boot-loader\): GRUB came up, but the ISO has no grub.cfg"):
        bootprompt.boot(console, BootLine(isolinux="linux", grub=None), 5)


# --- the plan: what is typed, from the remastered ISO ------------------------------------------------------

ARGS = [
    "inst.ks=http://10.0.2.2:40123/AbC/ks.cfg",
    "inst.text",
    "inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64",
    "console=ttyS0",
    "testbed.note=a b",
]


def test_plan_types_the_installer_entry_from_the_efi_boot_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    iso = media.remaster_for_serial(make_el7_iso(tmp_path))
    line = bootprompt.plan(iso, tmp_path, ARGS)
    assert line.isolinux == "linux " + " ".join(ARGS)
    # The entry's own line (its stage2 kept as written, console= added by the remaster), then the
    # factory's arguments quoted for GRUB, without a second stage2.
    assert line.grub == (
        "linuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64 quiet "
        "console=ttyS0,115200 inst.ks=http://10.0.2.2:40123/AbC/ks.cfg inst.text console=ttyS0 "
        "'testbed.note=a b'",
        "initrdefi /images/pxeboot/initrd.img",
        "boot",
    )
    assert "rd.live.check" not in EL7_EFIBOOT_GRUB_CFG.split("menuentry")[1]
    assert list(tmp_path.glob("efiboot.img")) == []  # the private copy is gone


def test_plan_of_bios_only_media_has_no_grub_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_CACHE", str(tmp_path / "cache"))
    bios = make_el7_iso(tmp_path, efiboot=False)
    tools_tree = media.list_dir(bios, "/EFI/BOOT")
    assert tools_tree == ["grub.cfg"]  # the tree's grub.cfg is read when there is no efiboot.img
    line = bootprompt.plan(media.remaster_for_serial(bios), tmp_path, ARGS)
    assert line.grub is not None and line.grub[0].startswith("linuxefi /images/pxeboot/vmlinuz ")
