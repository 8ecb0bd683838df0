"""The install monitor's classifier: one table of lines -> events, and the Monitor's line handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.stages.install import monitor
from factory.stages.install.monitor import (
    CompleteEvent,
    FailureEvent,
    Monitor,
    ProgressEvent,
    StageEvent,
    classify,
)

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
    # the same markers as anaconda.log and the kernel print them
    ("13:05:40,117 ERR anaconda: CmdlineError: Missing package: nosuchpkg", "anaconda", "missing-package"),
    (
        "13:05:40,118 DEBUG anaconda: Installing error populating transaction, retrying (4/10)",
        "anaconda",
        "packaging-retry",
    ),
    (
        "13:09:12,001 ERR anaconda: Error populating transaction after 10 anaconda retries: failure: "
        "Packages/bash-4.2.46-19.el7.x86_64.rpm from anaconda: [Errno 256] No more mirrors to try.",
        "anaconda",
        "packaging-retry",
    ),
    ('  File "/usr/sbin/anaconda", line 1086, in <module>', "console", "traceback"),
    ("[  245.1] BUG: unable to handle kernel paging request at ffffc90000a4e000", "console", "kernel-oops"),
    ("[  245.1] kernel BUG at mm/slub.c:3469!", "console", "kernel-oops"),
    ("[   21.5] reboot: System halted", "console", "halted"),
    (
        "dracut-initqueue[612]: Warning: failed to fetch kickstart from nfs:10.0.2.2:/ks/ks.cfg",
        "console",
        "kickstart-not-fetched",
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


def test_frames_in_the_installer_log_are_not_a_crash() -> None:
    # Handled exceptions are logged with their frames (blivet at DEBUG); only the console's count.
    assert (
        classify('13:05:40,2 DEBUG blivet:   File "/usr/lib/blivet/udev.py", line 12, in f', "anaconda")
        is None
    )


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


# ------------------------------------------------------------------ real-format transcripts
CONSOLE = Path(__file__).resolve().parents[1] / "data" / "console"


def replay(
    name: str, source: monitor.Source = "console", sizes: tuple[int, ...] = (7, 64, 1, 300, 13)
) -> Monitor:
    """Feed a transcript as the serial line delivers it: \\r\\r\\n line ends, cut into uneven reads."""
    text = (CONSOLE / name).read_text().replace("\n", "\r\r\n" if source == "console" else "\n")
    mon = Monitor()
    pos, i = 0, 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        mon.feed(source, text[pos : pos + size])
        pos, i = pos + size, i + 1
    return mon


# (transcript, kind, the whole message)
TRANSCRIPTS = [
    pytest.param(
        "cmdline-missing-package.log", "missing-package",
        "a %packages entry is not on the media: nosuchpkg", id="cmdline-missing-package",
    ),
    pytest.param(
        "cmdline-incomplete-spokes.log", "cmdline-error",
        "anaconda stopped (cmdline mode): The following mandatory spokes are not completed: "
        "Installation Destination; Root password",
        id="cmdline-incomplete-spokes",
    ),
    pytest.param(
        "hub-software-selection.log", "needs-input",
        "the installer is waiting for input at its text UI: incomplete: "
        "Software selection (Error checking software selection)",
        id="hub-software-selection",
    ),
    pytest.param(
        "hub-storage.log", "needs-input",
        "the installer is waiting for input at its text UI: incomplete: "
        "Installation Destination (Automatic partitioning selected); Root password (Password is not set.)",
        id="hub-storage-and-root-password",
    ),
    pytest.param(
        "packaging-retry.log", "packaging-retry",
        "package installation is stuck in anaconda's retry loop: "
        "error populating transaction, retrying (1/10)",
        id="packaging-retry-el72",
    ),
    pytest.param(
        "packaging-retry-later-el7.log", "packaging-retry",
        "package installation is stuck in anaconda's retry loop: "
        "Error populating transaction, anaconda is retrying (1/10)",
        id="packaging-retry-later-el7",
    ),
    pytest.param(
        "traceback-frames.log", "traceback",
        "the installer crashed with a traceback: BootLoaderError: boot loader install failed",
        id="traceback-frames-only",
    ),
    pytest.param(
        "traceback-frames-cut.log", "traceback",
        "the installer crashed with a traceback: last frame: File \"/usr/lib64/python2.7/site-packages/"
        "pyanaconda/packaging/yumpayload.py\", line 1579, in postInstall",
        id="traceback-frames-no-exception-line",
    ),
    pytest.param(
        "dracut-fatal.log", "dracut-fatal",
        "the installer's initramfs gave up: Failed to find a root filesystem in "
        "/tmp/curl_fetch_url1/install.img.",
        id="dracut-fatal-then-halted",
    ),
    pytest.param(
        "oops-gpf.log", "kernel-oops",
        "the kernel oopsed: general protection fault: 0000 [#1] SMP "
        "(process mkfs.xfs, in kmem_cache_alloc+0x75/0x1e0)",
        id="oops-general-protection-fault",
    ),
    pytest.param(
        "oops-null-panic.log", "kernel-panic",
        "the kernel panicked: Fatal exception in interrupt after BUG: unable to handle kernel NULL pointer "
        "dereference at 0000000000000010 (in virtblk_done+0x2c/0x110 [virtio_blk], process swapper/1)",
        id="oops-bug-null-pointer-then-panic",
    ),
    pytest.param(
        "oops-only.log", "kernel-oops",
        "the kernel oopsed: Oops: 0002 [#1] SMP (process rpm, in __kmalloc+0x92/0x230)",
        id="oops-header-only",
    ),
    pytest.param(
        "ks-fetch-failed.log", "kickstart-not-fetched",
        "dracut could not fetch the kickstart: http://10.0.2.2:41234/wrongtoken/ks.cfg "
        "(curl: (22) The requested URL returned error: 404 Not Found)",
        id="dracut-kickstart-fetch-failed",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "message"), TRANSCRIPTS)
def test_real_transcripts_are_classified_with_their_reason(name: str, kind: str, message: str) -> None:
    mon = replay(name)
    cause = mon.cause()
    assert cause is not None and cause.kind == kind
    assert mon.message() == message


@pytest.mark.parametrize("sizes", [(1,), (2, 3), (80,), (4096,)], ids=["bytewise", "tiny", "line", "whole"])
def test_hub_screen_survives_any_read_size(sizes: tuple[int, ...]) -> None:
    mon = replay("hub-software-selection.log", sizes=sizes)
    assert mon.message().endswith("incomplete: Software selection (Error checking software selection)")


def test_hub_is_classified_when_its_prompt_line_ends() -> None:
    # The prompt's first line ends with a line feed (summary.py's prompt has "\n" before "'r' to refresh"):
    # the failure is known at that line, not at an idle timeout; the redraws after it change nothing.
    text = (CONSOLE / "hub-software-selection.log").read_text().replace("\n", "\r\r\n")
    first = text.index("to begin installation |") + len("to begin installation |")
    mon = Monitor()
    mon.feed("console", text[:first])
    assert mon.failures == []
    mon.feed("console", "\r\r\n")
    assert [f.kind for f in mon.failures] == ["needs-input"]


def test_each_hub_prompt_names_the_screen_above_it() -> None:
    mon = Monitor()
    first = (CONSOLE / "hub-storage.log").read_text()
    second = (CONSOLE / "hub-software-selection.log").read_text()
    mon.feed("console", second.replace("\n", "\r\n"))
    assert "Software selection" in mon.message()
    later = Monitor()
    later.feed("console", (first + second).replace("\n", "\r\n"))
    # The cause is the first prompt, which sat below the storage screen.
    assert "Installation Destination" in later.message() and "Software selection" not in later.message()


def test_yes_no_question_without_a_line_end_is_classified() -> None:
    mon = Monitor()
    mon.feed("console", "Question\r\n\r\nYou have provided a weak password\r\nPlease respond 'yes' or 'no': ")
    assert [f.kind for f in mon.failures] == ["needs-input"]
    mon.feed("console", "\r\n")  # the same prompt ending later is not a second failure
    assert len(mon.failures) == 1


def test_storage_failure_is_not_doubled() -> None:
    mon = replay("storage-failed.anaconda.log", "anaconda")
    assert mon.message() == "storage configuration failed: Unable to allocate requested partition scheme."


def test_kickstart_error_quotes_the_problem_line() -> None:
    mon = Monitor()
    mon.feed(
        "console",
        "\r\nThe following problem occurred on line 12 of the kickstart file:\r\n\r\n"
        "Unknown command: sshkey\r\n\r\n",
    )
    assert mon.message() == "the installer rejected the kickstart: line 12: Unknown command: sshkey"


def test_halt_alone_is_its_own_kind() -> None:
    mon = Monitor()
    mon.feed("console", "Installation complete.\r\n[  300.1] reboot: System halted\r\n")
    cause = mon.cause()
    assert cause is not None and cause.kind == "halted"


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("13:01:02,1 INFO anaconda: Setting up the installation environment", id="stage"),
        pytest.param("[   1.0] Oops-free kernel", id="oops-word"),
        pytest.param("  Installing error-handler (3/9)", id="package-named-error"),
        pytest.param("echo 'File was written, line 3'", id="file-word"),
        pytest.param("Please make your choice quickly", id="choice-word"),
        pytest.param("dracut: FATAL_ERROR_COUNT=0", id="dracut-fatal-word"),
        pytest.param(
            "[  99.1] traps: python[812] general protection fault ip:7f01 sp:7ffd error:0 in libc-2.17.so",
            id="userspace-gpf-is-not-a-kernel-oops",
        ),
        pytest.param("13:01:02,1 INFO anaconda: System halted. (in a log)", id="halted-in-a-sentence"),
    ],
)
def test_lookalike_lines_are_not_failures(line: str) -> None:
    assert not isinstance(classify(line, "console"), FailureEvent)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "There was an error running the kickstart script at line 24.  This is a fatal error and\r\n"
            "installation will be aborted.  The details of this error are:\r\n\r\n"
            "/tmp/ks-script-x: line 3: grubby: command not found\r\n",
            "a %post --erroronfail script failed: line 24: "
            "/tmp/ks-script-x: line 3: grubby: command not found",
            id="with-output",
        ),
        pytest.param(
            "There was an error running the kickstart script at line 24.  This is a fatal err\r\n"
            "or and installation will be aborted.  The details of this error are:\r\n\r\n",
            "a %post --erroronfail script failed: line 24 (the script printed nothing)",
            id="hard-wrapped-no-output",
        ),
    ],
)
def test_failing_post_quotes_the_script_output(text: str, message: str) -> None:
    mon = Monitor()
    mon.feed("console", text)
    assert mon.message() == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[  360.1] INFO: task mkfs.xfs:1834 blocked for more than 120 seconds.\r\n"
            '[  360.1] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.\r\n'
            "[  360.2] Call Trace:\r\n",
            "the kernel printed a call trace: INFO: task mkfs.xfs:1834 blocked for more than 120 seconds.",
            id="call-trace-quotes-its-header",
        ),
        pytest.param("[  360.2] Call Trace:\r\n", "the kernel printed a call trace", id="call-trace-alone"),
        pytest.param(
            "Traceback (most recent call last):\r\n",
            "the installer crashed with a traceback",
            id="traceback-header-alone",
        ),
    ],
)
def test_a_bare_marker_is_not_repeated(text: str, message: str) -> None:
    mon = Monitor()
    mon.feed("console", text)
    assert mon.message() == message
