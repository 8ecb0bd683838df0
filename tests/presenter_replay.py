"""Replays a scripted build through factory.ui's live presenter with real sleeps, for tests that read the
screen back from tmux (tests/unit/test_presenter_terminal.py).

    python tests/presenter_replay.py {one,two,interrupted} PHASES_FILE

At each checkpoint it appends the checkpoint's name to PHASES_FILE and holds still for HOLD_S, so the test
can capture the pane twice in that state. After the presenter is closed it writes "end" and waits to be
killed (the pane must stay on screen to be read).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from factory.core import buildlog
from factory.core.events import Sink, Skip, StageFinished, StageProgress, StageStarted
from factory.ui import Mode, presenter_for

HOLD_S = 2.5
WARNING = "KVM present but a probe guest did not boot under it: using TCG (slow)"


class Script:
    def __init__(self, phases: Path) -> None:
        self.phases = phases
        self.lock = threading.Lock()

    def checkpoint(self, name: str) -> None:
        with self.lock, self.phases.open("a") as out:
            out.write(name + "\n")
        time.sleep(HOLD_S)


def one_spec(present: Sink, script: Script, spec: str = "testbed") -> None:
    present(StageStarted(spec, "validate"))
    time.sleep(0.3)
    present(StageFinished(spec, "validate", "ok", 0.3))
    present(StageStarted(spec, "media"))
    total = 4_000_000_000
    for i in range(5):
        present(StageProgress(spec, "media", "download testbed.iso", i * total / 4, total))
        time.sleep(0.1)
    present(StageFinished(spec, "media", "ok", 0.5))
    present(StageFinished(spec, "install", "skipped", 0.0, skip=Skip.DONE_BEFORE))
    present(StageStarted(spec, "verify"))
    present(StageProgress(spec, "verify", "booting the image"))
    # What accel.resolve logs in a real build: a line on the terminal while the rows are live.
    logging.getLogger("factory.vm.accel").warning(WARNING)
    script.checkpoint("verify-running")
    present(StageProgress(spec, "verify", "checks", 3, 10))
    script.checkpoint("bar-3")
    present(StageProgress(spec, "verify", "checks", 7, 10))
    script.checkpoint("bar-7")
    present(StageFinished(spec, "verify", "ok", 5.8))
    present(StageStarted(spec, "seal"))
    time.sleep(0.2)
    present(StageFinished(spec, "seal", "failed", 0.2, error="seal: the image still holds the build key"))
    present(StageFinished(spec, "compliance", "skipped", 0.0, skip=Skip.NOT_NEEDED))
    present(StageFinished(spec, "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED))


def two_specs(present: Sink, script: Script) -> None:
    # Two builds at once (factory build -j 2): events interleave from two threads.
    def build(spec: str) -> None:
        present(StageStarted(spec, "validate"))
        time.sleep(0.2)
        present(StageFinished(spec, "validate", "ok", 0.2))
        present(StageStarted(spec, "install"))
        for done in range(1, 41):
            present(StageProgress(spec, "install", f"installing package-{done}", done, 40))
            time.sleep(0.02)
        present(StageFinished(spec, "install", "ok", 0.8))
        present(StageFinished(spec, "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED))

    threads = [threading.Thread(target=build, args=(name,)) for name in ("alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def interrupted(present: Sink, script: Script) -> None:
    # Ctrl-C during a stage: it never reports its finish, and the presenter is closed under it.
    present(StageStarted("testbed", "install"))
    present(StageProgress("testbed", "install", "installing bash", 12, 128))
    time.sleep(1.2)


SCENARIOS = {"one": one_spec, "two": two_specs, "interrupted": interrupted}


def main() -> None:
    scenario, phases = sys.argv[1], Path(sys.argv[2])
    script = Script(phases)
    buildlog.configure(debug=False)  # the terminal log handler, as the CLI sets it up
    console = Console(stderr=True)
    with presenter_for(console, Mode.LIVE, prefix_names=scenario == "two") as present:
        SCENARIOS[scenario](present, script)
    with phases.open("a") as out:
        out.write("end\n")
    time.sleep(600)


if __name__ == "__main__":
    main()
