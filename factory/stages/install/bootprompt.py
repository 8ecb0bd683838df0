"""The boot loader on the serial console (serial-prompt installs): find out which one is there, type the
installer's boot line into it with the console's echo check.

    line = plan(iso, work, args)          # what to type, for isolinux and for GRUB
    outcome = boot(console, line, timeout)

BIOS media boot isolinux, which prints a plain `boot:` prompt (the remaster's `prompt 1`): the label and
the arguments are typed there. UEFI media boot GRUB, which draws a full-screen menu with escape sequences;
its screen is matched as text with the sequences dropped. At the menu `c` opens GRUB's command line, where
the installer entry's own kernel line (with the factory's arguments added), its initrd line and `boot` are
typed one by one, each confirmed by its echo (console.ScreenEcho) and its result read before the next.
The command line rather than the `e` editor: its echo is one line at a known place, where the editor
redraws a whole entry.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from factory.errors import InstallError, MediaError
from factory.stages.media import media
from factory.vm.console import Console, ConsoleTimeout, screen_text

Loader = Literal["isolinux", "grub-menu", "grub-cmdline"]

# What each loader shows on the serial console once it waits for a key (escape sequences dropped).
SCREENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("isolinux", re.compile(r"(?m)^boot: ?")),
    # GRUB 2's menu footer (grub-core/normal/menu_text.c); its first line is enough.
    ("grub-menu", re.compile(r"Use the \^ and v keys to select which entry is highlighted")),
    ("grub-rescue", re.compile(r"grub rescue> ?")),
    # The command line straight away: GRUB found no (usable) grub.cfg.
    ("grub-cmdline", re.compile(r"(?m)^grub> ?")),
)
GRUB_PROMPT = re.compile(r"grub> ?")
GRUB_ERROR = re.compile(r"error: ([^\n]*)")
# GRUB redraws its menu for a while after the first line shows (twice under OVMF): a key sent into the
# middle of a draw is still read, but waiting for a quiet screen keeps the transcript readable.
MENU_QUIET_S = 0.5
# Characters of console output kept for matching a screen (a GRUB menu draw under OVMF is ~8 KB).
SCREEN_KEEP = 65536
MENU_SETTLE_MAX_S = 10.0


@dataclass(frozen=True)
class BootLine:
    """What is typed: at isolinux's `boot:`, and (UEFI media) the commands typed at GRUB's command line."""

    isolinux: str
    grub: tuple[str, ...] | None


@dataclass(frozen=True)
class Outcome:
    loader: Loader
    repairs: int
    seconds: float


def plan(iso: Path, work: Path, args: list[str]) -> BootLine:
    """The boot line for the remastered `iso`: `linux <args>` for isolinux, and for GRUB the installer
    entry's kernel line plus `args`, its initrd line and `boot`."""
    isolinux = " ".join([media.INSTALL_LABEL, *args])
    cfg = media.efi_grub_cfg(iso, work)
    if cfg is None:
        return BootLine(isolinux, None)
    entry = media.grub_install_entry(cfg)
    if entry.linux is None or entry.initrd is None:
        raise MediaError(f"{iso}: grub.cfg entry {entry.title!r} has no kernel or no initrd line")
    own = entry.linux.split()
    # The entry names its own install source; typing the factory's copy again would bring a backslash
    # (LABEL=CentOS\x207...), which GRUB 2.06 doubles on the kernel command line (measured on Debian's).
    added = [
        a
        for a in args
        if not (a.startswith("inst.stage2=") and any(w.startswith("inst.stage2=") for w in own))
    ]
    # As written (a tab is a blank to GRUB, but not a key to type); quoted words keep their blanks.
    linux = " ".join([entry.linux.replace("\t", " "), *(media.grub_quote(a) for a in added)])
    return BootLine(isolinux, (linux, entry.initrd.replace("\t", " "), "boot"))


def wait_for_screen(console: Console, timeout: float) -> tuple[str, str]:
    """Read until one of SCREENS shows; (its name, the screen text so far). ConsoleTimeout otherwise."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        text = screen_text(seen)
        for name, pattern in SCREENS:
            if pattern.search(text):
                return name, text
        left = deadline - time.monotonic()
        if left <= 0:
            tail = text.strip()[-200:]
            raise ConsoleTimeout(
                f"no boot loader prompt (isolinux boot: or the GRUB menu) on the serial console within "
                f"{timeout:.0f} s" + (f" (last output: {tail!r})" if tail else " (no output at all)")
            )
        data = console.read(min(left, 0.5))
        if data is None:
            raise InstallError("qemu-failed", "the serial console closed before a boot loader prompt showed")
        seen = (seen + data)[-SCREEN_KEEP:]  # a chatty firmware must not make every match slower


def boot(console: Console, line: BootLine, timeout: float) -> Outcome:
    """Wait for the boot loader, type the boot line into it and start the installer's kernel."""
    started = time.monotonic()
    loader, _ = wait_for_screen(console, timeout)
    if loader == "isolinux":
        typed = console.type_line(line.isolinux)
        return Outcome("isolinux", typed.repairs, time.monotonic() - started)
    if loader == "grub-rescue":
        raise InstallError(
            "boot-loader", "GRUB stopped at its rescue prompt (grub rescue>): it found neither its modules "
            "nor grub.cfg"
        )  # fmt: skip
    if line.grub is None:
        raise InstallError(
            "boot-loader", "GRUB came up, but the ISO has no grub.cfg to take the boot line from"
        )
    if loader == "grub-menu":
        _quiet(console, MENU_QUIET_S, MENU_SETTLE_MAX_S)
        console.send("c")
        _grub_prompt(console, timeout, "GRUB's command line (after `c` at the menu)")
    repairs = 0
    for command in line.grub:
        typed = console.type_line(command, prompt="grub> ", screen=True)
        repairs += typed.repairs
        if command != "boot":
            _grub_prompt(console, timeout, f"GRUB's prompt after {command.split()[0]}")
    return Outcome(
        "grub-menu" if loader == "grub-menu" else "grub-cmdline", repairs, time.monotonic() - started
    )


def _quiet(console: Console, quiet: float, limit: float) -> None:
    """Read until nothing arrives for `quiet` seconds (at most `limit` seconds in all)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        data = console.read(quiet)
        if data == "":
            return
        if data is None:
            raise InstallError("qemu-failed", "the serial console closed at the GRUB menu")


def _grub_prompt(console: Console, timeout: float, what: str) -> None:
    """Wait for `grub>`; a GRUB `error: ...` printed before it ends the install, quoting GRUB."""
    deadline = time.monotonic() + timeout
    seen = ""
    while True:
        text = screen_text(seen)
        if m := GRUB_ERROR.search(text):
            raise InstallError("boot-loader", f"GRUB: error: {m.group(1).strip()}")
        if GRUB_PROMPT.search(text):
            # Under OVMF the prompt comes twice; its second copy must not count as an echo.
            _quiet(console, 0.2, 2.0)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            tail = text.strip()[-200:]
            raise ConsoleTimeout(
                f"no {what} on the serial console within {timeout:.0f} s"
                + (f" (last output: {tail!r})" if tail else "")
            )
        data = console.read(min(left, 0.5))
        if data is None:
            raise InstallError("qemu-failed", f"the serial console closed while waiting for {what}")
        seen = (seen + data)[-SCREEN_KEEP:]  # a chatty firmware must not make every match slower
