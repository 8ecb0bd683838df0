"""factory.ui's plain (CI log) and JSON (--json) modes, read from a captured console; the live mode on a
real terminal is tests/unit/test_presenter_terminal.py."""

from __future__ import annotations

import io
import json
import threading

import pytest
from rich.console import Console

from factory.core.events import Event, Skip, StageFinished, StageProgress, StageStarted
from factory.ui import Mode, mode_for, presenter_for

BUILD: list[Event] = [
    StageStarted("testbed", "validate"),
    StageFinished("testbed", "validate", "ok", 0.42),
    StageStarted("testbed", "media"),
    StageProgress("testbed", "media", "download testbed.iso", 0, 4_000_000),
    StageProgress("testbed", "media", "download testbed.iso", 4_000_000, 4_000_000),
    StageFinished("testbed", "media", "ok", 1.0),
    StageFinished("testbed", "install", "skipped", 0.0, skip=Skip.DONE_BEFORE),
    StageStarted("testbed", "verify"),
    StageProgress("testbed", "verify", "booting the image"),
    StageProgress("testbed", "verify", "booting the image"),
    StageProgress("testbed", "verify", "running checks"),
    StageProgress("testbed", "verify", "installing openssh-server", 3, 128),
    StageProgress("testbed", "verify", "installing zlib", 128, 128),
    StageFinished("testbed", "verify", "failed", 12.34, error="3 of 20 checks failed"),
    StageFinished("testbed", "compliance", "skipped", 0.0, skip=Skip.NOT_NEEDED),
    StageFinished("testbed", "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED),
]


def console() -> Console:
    return Console(file=io.StringIO(), width=80, color_system=None)


def shown(c: Console) -> list[str]:
    out = c.file
    assert isinstance(out, io.StringIO)
    return out.getvalue().splitlines()


def test_plain_mode_logs_a_line_per_start_finish_skip_step_and_count_end() -> None:
    c = console()
    with presenter_for(c, Mode.PLAIN, prefix_names=False) as present:
        for event in BUILD:
            present(event)
    assert shown(c) == [
        "validate: started",
        "validate: ok (0.4 s)",
        "media: started",
        "media: download testbed.iso (0 bytes/4.0 MB)",
        "media: download testbed.iso (4.0 MB/4.0 MB)",
        "media: ok (1.0 s)",
        "install: skipped: done before for this image",
        "verify: started",
        "verify: booting the image",  # once, though reported twice
        "verify: running checks",
        "verify: installing zlib (128/128)",  # the end of the count; none of the counts before
        "verify: failed (12.3 s): 3 of 20 checks failed",
        "compliance: skipped: not needed",
        "promote: skipped: not requested",
    ]


def test_plain_mode_prefixes_the_spec_with_several_specs() -> None:
    c = console()
    with presenter_for(c, Mode.PLAIN, prefix_names=True) as present:
        present(StageStarted("alpha", "install"))
        present(StageProgress("beta", "install", "Starting package installation"))
        present(StageFinished("beta", "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED))
    assert shown(c) == [
        "alpha: install: started",
        "beta: install: Starting package installation",
        "beta: promote: skipped: not requested",
    ]


def test_plain_lines_are_not_wrapped_at_the_console_width() -> None:
    c = console()
    detail = "Fetching kickstart from http://10.0.2.2:4567/… " + "x" * 100
    with presenter_for(c, Mode.PLAIN, prefix_names=False) as present:
        present(StageProgress("testbed", "install", detail))
    assert shown(c) == [f"install: {detail}"]


def test_json_mode_writes_one_object_per_event() -> None:
    c = console()
    with presenter_for(c, Mode.JSON, prefix_names=True) as present:
        for event in BUILD:
            present(event)
    lines = [json.loads(line) for line in shown(c)]
    assert len(lines) == len(BUILD)
    assert lines[0] == {"event": "started", "spec": "testbed", "stage": "validate"}
    assert lines[3] == {
        "event": "progress",
        "spec": "testbed",
        "stage": "media",
        "detail": "download testbed.iso",
        "done": 0,
        "total": 4_000_000,
    }
    assert lines[6] == {
        "event": "finished",
        "spec": "testbed",
        "stage": "install",
        "status": "skipped",
        "seconds": 0.0,
        "skip": "done before for this image",
        "error": None,
    }
    assert lines[13]["status"] == "failed" and lines[13]["error"] == "3 of 20 checks failed"
    assert [line["skip"] for line in lines if line["event"] == "finished"] == [
        None,
        None,
        "done before for this image",
        None,
        "not needed",
        "not requested",
    ]


def test_json_mode_turns_log_lines_on_the_same_stream_into_objects() -> None:
    import logging

    c = console()
    handler = logging.StreamHandler(c.file)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with presenter_for(c, Mode.JSON, prefix_names=False) as present:
            present(StageStarted("testbed", "install"))
            logging.getLogger("factory.vm.accel").warning("KVM present but did not boot: using TCG")
        logging.getLogger("factory.vm.accel").warning("after the build")
    finally:
        root.removeHandler(handler)
    lines = shown(c)
    assert [json.loads(line) for line in lines[:2]] == [
        {"event": "started", "spec": "testbed", "stage": "install"},
        {
            "event": "log",
            "level": "WARNING",
            "logger": "factory.vm.accel",
            "message": "KVM present but did not boot: using TCG",
        },
    ]
    assert lines[2:] == ["WARNING factory.vm.accel: after the build"]  # its own format again


def test_json_lines_from_parallel_builds_never_interleave() -> None:
    c = console()
    with presenter_for(c, Mode.JSON, prefix_names=True) as present:

        def build(spec: str) -> None:
            for n in range(300):
                present(StageProgress(spec, "install", f"installing package-{n} " + "y" * 200, n, 300))

        threads = [threading.Thread(target=build, args=(s,)) for s in ("alpha", "beta", "gamma")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = [json.loads(line) for line in shown(c)]  # a torn line would not parse
    assert len(lines) == 900
    for spec in ("alpha", "beta", "gamma"):
        assert [x["done"] for x in lines if x["spec"] == spec] == list(range(300))


@pytest.mark.parametrize(
    ("terminal", "json_lines", "mode"),
    [
        pytest.param(True, False, Mode.LIVE, id="terminal-live"),
        pytest.param(False, False, Mode.PLAIN, id="pipe-plain"),
        pytest.param(True, True, Mode.JSON, id="terminal-json"),
        pytest.param(False, True, Mode.JSON, id="pipe-json"),
    ],
)
def test_mode_follows_the_terminal_and_json(terminal: bool, json_lines: bool, mode: Mode) -> None:
    c = Console(file=io.StringIO(), force_terminal=terminal)
    assert mode_for(c, json_lines=json_lines) is mode


def live_screen(events: list[Event], *, prefix_names: bool = False) -> list[str]:
    """What the live rows draw after `events`, rendered once (no terminal: the tmux tests do that)."""
    from factory.ui.presenter import LiveRows

    live = LiveRows(prefix_names)
    for event in events:
        live(event)
    c = console()
    c.width = 160
    c.print(live.render())
    return [line.rstrip() for line in shown(c)]


def test_live_a_stage_started_again_keeps_its_one_row() -> None:
    screen = live_screen(
        [
            StageStarted("testbed", "validate"),
            StageFinished("testbed", "validate", "ok", 0.3),
            StageStarted("testbed", "install"),
            StageFinished("testbed", "install", "failed", 2.0, error="guest went quiet"),
            StageStarted("testbed", "install"),  # a retry in the same run
            StageFinished("testbed", "install", "ok", 65.0),
        ]
    )
    assert screen == ["✓ validate 0:00", "✓ install  1:05"]


def test_live_progress_after_the_finish_does_not_revive_the_row() -> None:
    screen = live_screen(
        [
            StageStarted("testbed", "media"),
            StageFinished("testbed", "media", "ok", 1.0),
            StageProgress("testbed", "media", "download late.iso", 1, 2),
        ]
    )
    assert screen == ["✓ media 0:01"]


def test_live_a_skip_without_a_start_gets_its_row_and_reason() -> None:
    screen = live_screen(
        [StageFinished("alpha", "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED)], prefix_names=True
    )
    assert screen == ["- alpha: promote   skipped: not requested"]


def test_live_a_long_error_is_cut_not_the_row() -> None:
    error = (
        "kickstart validation found 7 problem(s); first: bad.ks: [cleartext-rootpw] no rootpw: " + "x" * 200
    )
    screen = live_screen(
        [
            StageStarted("testbed", "validate"),
            StageFinished("testbed", "validate", "failed", 0.2, error=error),
            StageFinished("testbed", "promote", "skipped", 0.0, skip=Skip.NOT_REQUESTED),
        ]
    )
    assert len(screen) == 2
    assert screen[0].startswith("✗ validate 0:00  kickstart validation found 7 problem(s)")
    assert screen[0].endswith("…") and len(screen[0]) == 160
    assert screen[1] == "- promote        skipped: not requested"
