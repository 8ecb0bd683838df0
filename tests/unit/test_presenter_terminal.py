"""factory.ui's live rows on a real terminal: tests/presenter_replay.py replays scripted builds in a
160x40 tmux pane and the screen is read back at chosen moments (tests/terminal.py)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.presenter_replay import WARNING
from tests.terminal import SPINNER, Pane

ROOT = Path(__file__).resolve().parents[2]
# A row: mark, label ("stage" or "spec: stage"), then clock / bar / detail.
ROW = re.compile(r"^(?P<mark>\S) (?P<label>[a-z]+(?:: [a-z]+)?)(?: +(?P<clock>\d+:\d\d))?(?P<rest>.*)$")
LOGGED = f"WARNING factory.vm.accel: {WARNING}"
SETTLE_S = 0.6  # the display redraws 8 times a second: a checkpoint's state is on screen by then


def rows(screen: list[str], *, above: tuple[str, ...] = ()) -> dict[str, re.Match[str]]:
    """The stage rows, each label once; `above`: the only other lines, printed above the rows."""
    lines = [line for line in screen if line]
    assert tuple(lines[: len(above)]) == above, f"expected {above} above the rows:\n{screen}"
    parsed = [ROW.match(line) for line in lines[len(above) :]]
    assert all(parsed), f"a line that is not a stage row:\n{screen}"
    labels = [m["label"] for m in parsed if m]
    assert len(labels) == len(set(labels)), f"duplicated rows: {labels}"
    return {m["label"]: m for m in parsed if m}


class Replay:
    def __init__(self, tmp_path: Path, scenario: str) -> None:
        self.phases = tmp_path / "phases"
        self.phases.touch()
        self.pane = Pane(
            [sys.executable, str(ROOT / "tests" / "presenter_replay.py"), scenario, str(self.phases)],
            cwd=ROOT,
        )

    def at(self, phase: str, timeout: float = 30) -> list[str]:
        """The screen once the replay has reached `phase` (it holds still there for 2.5 s)."""
        deadline = time.monotonic() + timeout
        while phase not in self.phases.read_text().split():
            assert time.monotonic() < deadline, f"the replay never reached {phase}: {self.pane.screen()}"
            assert not self.pane.dead(), f"the replay died:\n{self.pane.screen()}"
            time.sleep(0.1)
        time.sleep(SETTLE_S)
        return self.pane.screen()


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Callable[[str], Replay]]:
    started: list[Replay] = []

    def start(scenario: str) -> Replay:
        started.append(Replay(tmp_path, scenario))
        return started[-1]

    yield start
    for r in started:
        r.pane.close()


def seconds(clock: str) -> int:
    minutes, secs = clock.split(":")
    return int(minutes) * 60 + int(secs)


@pytest.mark.timeout(90)
def test_live_rows_one_spec(replay: Callable[[str], Replay]) -> None:
    r = replay("one")
    first = r.at("verify-running")
    time.sleep(1.5)
    second = r.pane.screen()
    # The warning logged while verify runs is printed once, above the rows; it leaves no stale copy.
    a, b = rows(first, above=(LOGGED,)), rows(second, above=(LOGGED,))
    assert list(a) == ["validate", "media", "install", "verify"]
    assert a["validate"]["mark"] == "✓" and a["media"]["mark"] == "✓"
    assert "━" * 24 + " 4.0 GB/4.0 GB" in a["media"]["rest"]
    assert a["install"]["mark"] == "-" and a["install"]["clock"] is None
    assert a["install"]["rest"].strip() == "skipped: done before for this image"
    # A running stage spins and its clock moves; the finished rows stay exactly as they were.
    assert a["verify"]["mark"] in SPINNER and b["verify"]["mark"] in SPINNER
    assert seconds(b["verify"]["clock"]) > seconds(a["verify"]["clock"])
    assert "booting the image" in a["verify"]["rest"]
    for stage in ("validate", "media", "install"):
        assert a[stage].group(0) == b[stage].group(0), stage

    # The bar moves with done/total (24 cells: 3/10 fills 7, 7/10 fills 17).
    at3 = rows(r.at("bar-3"), above=(LOGGED,))["verify"]["rest"]
    assert "━" * 7 + "─" * 17 + " 3/10" in at3
    at7 = rows(r.at("bar-7"), above=(LOGGED,))["verify"]["rest"]
    assert "━" * 17 + "─" * 7 + " 7/10" in at7

    end = r.at("end")
    time.sleep(1.5)
    later = r.pane.screen()
    assert end == later, "the screen changed after the build ended"
    assert not SPINNER & set("".join(end)), f"a spinner is left after the end:\n{end}"
    done = rows(end, above=(LOGGED,))
    assert list(done) == ["validate", "media", "install", "verify", "seal", "compliance", "promote"]
    assert [done[s]["mark"] for s in done] == ["✓", "✓", "-", "✓", "✗", "-", "-"]
    assert done["verify"]["clock"] == "0:05"  # the stage's own seconds (5.8), frozen at its finish
    assert "━" * 24 + " 10/10" in done["verify"]["rest"]
    assert done["seal"]["rest"].strip().endswith("seal: the image still holds the build key")
    assert done["install"]["rest"].strip() == "skipped: done before for this image"
    assert done["compliance"]["rest"].strip() == "skipped: not needed"
    assert done["promote"]["rest"].strip() == "skipped: not requested"


@pytest.mark.timeout(90)
def test_live_rows_two_specs_are_prefixed_and_grouped(replay: Callable[[str], Replay]) -> None:
    r = replay("two")
    end = r.at("end")
    time.sleep(1.5)
    assert r.pane.screen() == end
    assert not SPINNER & set("".join(end))
    done = rows(end)
    assert sorted(done) == sorted(
        f"{spec}: {stage}" for spec in ("alpha", "beta") for stage in ("validate", "install", "promote")
    )
    specs = [label.split(":")[0] for label in done]
    assert specs in (["alpha"] * 3 + ["beta"] * 3, ["beta"] * 3 + ["alpha"] * 3), specs
    for spec in ("alpha", "beta"):
        assert done[f"{spec}: install"]["mark"] == "✓"
        assert "━" * 24 + " 40/40" in done[f"{spec}: install"]["rest"]
        assert done[f"{spec}: promote"]["rest"].strip() == "skipped: not requested"


@pytest.mark.timeout(60)
def test_a_stage_cut_short_stops_spinning_when_the_display_closes(replay: Callable[[str], Replay]) -> None:
    r = replay("interrupted")
    end = r.at("end")
    time.sleep(1.5)
    assert r.pane.screen() == end
    assert not SPINNER & set("".join(end))
    [(label, row)] = rows(end).items()
    assert label == "install" and row["mark"] == "!"
    assert row["clock"] == "0:01"
    assert "━" * 2 + "─" * 22 + " 12/128" in row["rest"] and row["rest"].endswith("did not finish")
