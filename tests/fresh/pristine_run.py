"""The pristine-root run of README command 1 (.ci/pristine.sh) as a background process: conftest.py
starts it when the session is collected, test_readme_pristine.py collects its result, last."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_NAME = "test_command_1_in_a_pristine_debian_root"
TIMEOUT_S = 45 * 60


@dataclass
class PristineRun:
    """`.ci/pristine.sh COMMAND` running in the background, its output going to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float

    def wait(self) -> tuple[int, str]:
        """The exit status and the output, once the run ended (killed after TIMEOUT_S from its start)."""
        left = max(1.0, TIMEOUT_S - (time.monotonic() - self.started))
        try:
            code = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.stop()
            code = -1
        return code, self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            # bash runs pristine.sh's EXIT trap: processes in the root, its mounts, the root itself.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


RUN_KEY = pytest.StashKey[PristineRun]()


def cannot_run() -> str | None:
    """Why the pristine-root run cannot happen on this machine, or None."""
    missing = [p for p in ("mmdebstrap", "chroot", "mount") if shutil.which(p) is None]
    if os.geteuid() != 0:
        return "needs root"
    if missing:
        return f"needs {', '.join(missing)}"
    return None


def start(config: pytest.Config, command: str) -> PristineRun:
    log = Path(tempfile.mkdtemp(prefix="factory-pristine-log-")) / "pristine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / ".ci" / "pristine.sh"), command],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = PristineRun(proc, log, time.monotonic())
    config.stash[RUN_KEY] = run
    return run


def readme_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The non-comment lines of the sh block under "## Two commands" (what .ci/run reads too)."""
    lines = readme.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("## Two commands"))
    block = next(i for i in range(start, len(lines)) if lines[i].startswith("```sh"))
    end = next(i for i in range(block + 1, len(lines)) if lines[i].startswith("```"))
    return [ln for ln in lines[block + 1 : end] if ln.strip() and not ln.lstrip().startswith("#")]
