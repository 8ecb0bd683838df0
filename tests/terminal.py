"""A real terminal for tests: a command in a detached tmux session of a given size, its screen read back
with `tmux capture-pane`. Each Pane runs its own tmux server (-L), so it never touches another's sessions."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

# rich's "dots" spinner: none of these may stay on screen once a build has ended.
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


class Pane:
    def __init__(self, argv: Sequence[str], *, cwd: Path, width: int = 160, height: int = 40) -> None:
        self.server = f"factory-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # COLUMNS/LINES from the test's own environment would override the pane's real size.
        # The exit status goes to a file: tmux's own can lag behind the pane's death.
        self.status_file = Path(tempfile.mkdtemp(prefix="pane-")) / "status"
        command = (
            f"env -u COLUMNS -u LINES {shlex.join(argv)}; echo $? > {shlex.quote(str(self.status_file))}"
        )
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "-c", str(cwd), command
        )
        # Keep the screen readable after the command exits (a failed build's last frame).
        self._tmux("set-option", "-t", "t", "remain-on-exit", "on")
        self.socket = Path(self._tmux("display-message", "-p", "#{socket_path}").strip())

    def _tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-f", "/dev/null", "-L", self.server, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return proc.stdout

    def screen(self, *, history: bool = False) -> list[str]:
        """The visible lines (with `history`: from the top of the scrollback), right-stripped, without the
        empty ones below the last text."""
        since = ("-S", "-") if history else ()
        lines = [line.rstrip() for line in self._tmux("capture-pane", "-p", *since, "-t", "t").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def dead(self) -> bool:
        return self._tmux("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def wait_exit(self, timeout: float) -> int:
        """The command's exit status, once it has ended (the pane stays, its last screen readable)."""
        deadline = time.monotonic() + timeout
        while not self.status_file.is_file() or not self.status_file.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout:.0f} s:\n" + "\n".join(self.screen()))
            time.sleep(1.0)
        time.sleep(0.5)  # the last frame is drawn before the exit: let tmux take it in
        return int(self.status_file.read_text())

    def wait_for(self, text: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if any(text in line for line in lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on screen within {timeout:.0f} s:\n" + "\n".join(self.screen()))

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=30, check=False
        )
        self.socket.unlink(missing_ok=True)  # tmux leaves it behind
        shutil.rmtree(self.status_file.parent, ignore_errors=True)
