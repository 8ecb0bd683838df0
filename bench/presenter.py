"""What one event costs the stage that sends it, per presenter mode (a 4 GB download sends ~4,000).

    python bench/presenter.py [EVENTS]

The live mode is measured on a forced terminal into memory (its redraws run on rich's own thread).
Goal: under 100 µs an event in every mode, so a stage never waits on the display.
"""

from __future__ import annotations

import io
import sys
import time

from rich.console import Console

from factory.core.events import StageProgress, StageStarted
from factory.ui import Mode, presenter_for


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for mode in Mode:
        console = Console(file=io.StringIO(), force_terminal=mode is Mode.LIVE, width=160)
        with presenter_for(console, mode, prefix_names=False) as present:
            present(StageStarted("testbed", "media"))
            started = time.perf_counter()
            for i in range(events):
                present(StageProgress("testbed", "media", "download testbed.iso", i * 2**20, events * 2**20))
            seconds = time.perf_counter() - started
        print(f"{mode.value:5}: {seconds / events * 1e6:6.1f} µs/event over {events} progress events")


if __name__ == "__main__":
    main()
