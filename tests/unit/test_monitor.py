"""The install monitor's classifier: one table of lines -> events, and the Monitor's line handling."""

from __future__ import annotations

import pytest

from factory import monitor
from factory.monitor import CompleteEvent, FailureEvent, Monitor, ProgressEvent, StageEvent, classify

FAILURES = [
    ("Traceback (most recent call last):", "console", "traceback"),
    ("13:01:02,123 CRIT anaconda: Traceback (most recent call last): Boom", "anaconda", "traceback"),
    ("[  12.3] Out of memory: Killed process 812 (anaconda)", "console", "out-of-memory"),
    ("[  40.1] Call Trace:", "console", "kernel-oops"),
    ("anaconda 21.48.22.56-1 crashed on signal 11", "console", "crashed-on-signal"),
    (
        "13:01:02,1 ERR packaging: packaging: Installation failed: DependencyError",
        "anaconda",
        "packaging-failed",
    ),
    ("13:01:02,200 CRIT anaconda: something fatal", "anaconda", "critical"),
    ("The following problem occurred on line 12 of the kickstart file:", "console", "kickstart-error"),
    ("storage configuration failed: not enough space", "console", "storage-failed"),
    ("[    3.2] Kernel panic - not syncing: VFS: Unable to mount root fs", "console", "kernel-panic"),
    (
        "[  180.0] dracut-initqueue[623]: Warning: dracut-initqueue timeout - starting timeout scripts",
        "console",
        "dracut-timeout",
    ),
    ("dracut-initqueue[1]: Warning: Could not boot.", "console", "dracut-timeout"),
    ("[  181.9] dracut: Entering emergency mode. Exit the shell to continue.", "console", "emergency-mode"),
    (
        "There was an error running the kickstart script at line 30.  This is a fatal error and",
        "console",
        "post-failed",
    ),
    (
        "You have specified that the package 'nosuch' should be installed.  This package does not exist.",
        "console",
        "missing-package",
    ),
]


@pytest.mark.parametrize(("line", "source", "kind"), FAILURES, ids=[f[2] + "-" + f[1] for f in FAILURES])
def test_failure_lines_are_classified(line: str, source: monitor.Source, kind: str) -> None:
    event = classify(line, source)
    assert isinstance(event, FailureEvent)
    assert event.kind == kind
    assert event.line == line.strip()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("Installing tree (127/128)", ProgressEvent("tree", 127, 128), id="progress-console"),
        pytest.param(
            "13:01:02,110 INFO anaconda: Installing bash-4.2.46-19.el7.x86_64 (12/301)",
            ProgressEvent("bash-4.2.46-19.el7.x86_64", 12, 301),
            id="progress-log",
        ),
        pytest.param(
            "Starting package installation process",
            StageEvent("Starting package installation process"),
            id="stage",
        ),
        pytest.param(
            "13:00:00,500 INFO anaconda: Installing boot loader",
            StageEvent("Installing boot loader"),
            id="stage-log-prefix-stripped",
        ),
        pytest.param("Installation complete.", CompleteEvent("Installation complete."), id="complete"),
        pytest.param("[    0.000000] Linux version 6.1.0", None, id="kernel-noise"),
        pytest.param("", None, id="empty"),
        pytest.param("\r\r", None, id="only-carriage-returns"),
        pytest.param("INFO anaconda: CRITICAL_PATH set", None, id="CRIT-inside-a-word"),
    ],
)
def test_other_lines(line: str, expected: monitor.Event | None) -> None:
    assert classify(line, "anaconda") == expected


def test_crit_on_the_console_is_not_a_log_level() -> None:
    assert classify("echo CRIT: test", "console") is None
    assert isinstance(classify("echo CRIT: test", "anaconda"), FailureEvent)


def test_monitor_joins_partial_lines_and_handles_serial_line_ends() -> None:
    mon = Monitor()
    assert mon.feed("console", "Installing tr") == []
    assert mon.feed("console", "ee (3/9)\r\r\nInstalling less (4/9)\r") == [ProgressEvent("tree", 3, 9)]
    assert mon.feed("console", "\r\n") == [ProgressEvent("less", 4, 9)]
    assert (mon.packages_done, mon.packages_total, mon.stage) == (4, 9, "Installing less")


def test_monitor_keeps_sources_apart() -> None:
    mon = Monitor()
    mon.feed("console", "Traceback (most")
    mon.feed("anaconda", "13:00:00,1 INFO anaconda: hello\n")
    assert mon.failures == []
    mon.feed("console", " recent call last):\n")
    assert [f.kind for f in mon.failures] == ["traceback"]


def test_most_specific_failure_is_the_cause() -> None:
    mon = Monitor()
    mon.feed("anaconda", "13:00:00,1 CRIT anaconda: boom\n")
    mon.feed("console", "Traceback (most recent call last):\n  File x\nError: boom\n")
    cause = mon.cause()
    assert cause is not None and cause.kind == "traceback"
    assert "Error: boom" in mon.details()
    assert "[anaconda.log]" in mon.details()


def test_completion_and_flush() -> None:
    mon = Monitor()
    mon.feed("console", "Installation complete.")
    assert not mon.complete
    assert mon.flush() == [CompleteEvent("Installation complete.")]
    assert mon.complete


def test_recent_lines_are_bounded() -> None:
    mon = Monitor(context_lines=3)
    mon.feed("console", "".join(f"line {i}\n" for i in range(10)))
    assert list(mon.recent) == ["line 7", "line 8", "line 9"]
