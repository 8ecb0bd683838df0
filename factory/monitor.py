"""Watching an install: console and installer-log lines in, events out (progress, stage, failure, done).

Pure and unit-testable: no I/O, no clock. One table maps failure markers to stable kinds; the markers are
the ones lorax and anaconda's kickstart-tests look for, plus the kernel's and dracut's own.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Literal

Source = Literal["console", "anaconda"]


@dataclass(frozen=True)
class Marker:
    pattern: re.Pattern[str]
    kind: str
    # Lower = more specific; when several failures show up together the most specific names the cause.
    rank: int
    what: str


def _m(regex: str, kind: str, rank: int, what: str) -> Marker:
    return Marker(re.compile(regex), kind, rank, what)


# THE table: marker -> failure kind.
FAILURE_MARKERS: tuple[Marker, ...] = (
    _m(r"Kernel panic - not syncing", "kernel-panic", 0, "the kernel panicked"),
    _m(r"The following problem occurred on line \d+ of the kickstart file", "kickstart-error", 1,
       "the installer rejected the kickstart"),
    _m(r"There was an error running the kickstart script at line \d+", "post-failed", 2,
       "a %post --erroronfail script failed"),
    _m(r"Traceback \(", "traceback", 3, "the installer crashed with a traceback"),
    _m(r"packaging: Installation failed", "packaging-failed", 4, "package installation failed"),
    _m(r"You have specified that the package '[^']*' should be installed\.\s+This package does not exist",
       "missing-package", 4, "a %packages entry is not on the media"),
    _m(r"storage configuration failed:", "storage-failed", 4, "storage configuration failed"),
    _m(r"Out of memory:", "out-of-memory", 5, "the guest ran out of memory"),
    _m(r"crashed on signal", "crashed-on-signal", 5, "an installer process crashed on a signal"),
    _m(r"Call Trace:", "kernel-oops", 6, "the kernel printed a call trace"),
    _m(r"dracut-initqueue\[\d+\]: Warning: dracut-initqueue timeout", "dracut-timeout", 6,
       "dracut timed out waiting for the install media or root"),
    _m(r"dracut-initqueue\[\d+\]: Warning: Could not boot", "dracut-timeout", 6,
       "dracut could not boot the installer"),
    _m(r"Entering emergency mode", "emergency-mode", 7, "the installer's initramfs gave up (emergency mode)"),
    # An anaconda.log line at level CRIT (lorax's check); least specific, the console usually says more.
    _m(r"(^|[\s,:])CRIT(\s|:)", "critical", 9, "the installer logged a critical error"),
)  # fmt: skip

PROGRESS = re.compile(r"Installing (?P<package>\S+) \((?P<done>\d+)/(?P<total>\d+)\)")
COMPLETE = re.compile(r"Installation complete")
# Anaconda's stage lines (text mode and anaconda.log), shown as the status line.
STAGES = re.compile(
    r"(Starting installer|Setting up the installation environment|Fetching kickstart|Creating \S+ on "
    r"|Creating disklabel|Configuring storage|Preparing transaction|Starting package installation"
    r"|Performing post-installation setup tasks|Installing boot loader|Running post-installation scripts"
    r"|Configuring installed system|Writing network configuration|Creating users"
    r"|Installation complete|Powering off|Rebooting)[^\r\n]*"
)
# Strips anaconda.log's "HH:MM:SS,mmm LEVEL anaconda: " prefix for display.
_LOG_PREFIX = re.compile(r"^\d\d:\d\d:\d\d,\d+ \w+ [\w.-]+:\s*")


@dataclass(frozen=True)
class ProgressEvent:
    package: str
    done: int
    total: int


@dataclass(frozen=True)
class StageEvent:
    text: str


@dataclass(frozen=True)
class FailureEvent:
    kind: str
    what: str
    line: str
    source: Source
    rank: int


@dataclass(frozen=True)
class CompleteEvent:
    line: str


Event = ProgressEvent | StageEvent | FailureEvent | CompleteEvent


def classify(line: str, source: Source = "console") -> Event | None:
    """One line -> at most one event. Failures win over progress and stages."""
    text = line.strip("\r\n\0 ")
    if not text:
        return None
    for marker in FAILURE_MARKERS:
        # CRIT is a log level: only the installer log has levels (a console line saying CRIT is not one).
        if marker.kind == "critical" and source != "anaconda":
            continue
        if marker.pattern.search(text):
            return FailureEvent(marker.kind, marker.what, text, source, marker.rank)
    if m := PROGRESS.search(text):
        return ProgressEvent(m["package"], int(m["done"]), int(m["total"]))
    if COMPLETE.search(text):
        return CompleteEvent(text)
    if m := STAGES.search(text):
        return StageEvent(_LOG_PREFIX.sub("", m.group(0)).strip())
    return None


class Monitor:
    """Feeds chunks of console/log text through `classify`, keeping partial lines and recent context."""

    def __init__(self, context_lines: int = 15) -> None:
        self._partial: dict[Source, str] = {"console": "", "anaconda": ""}
        self.recent: deque[str] = deque(maxlen=context_lines)
        self.failures: list[FailureEvent] = []
        self.complete = False
        self.packages_done = 0
        self.packages_total = 0
        self.stage = ""

    def feed(self, source: Source, chunk: str) -> list[Event]:
        text = self._partial[source] + chunk
        *lines, self._partial[source] = re.split(r"\r*\n", text)
        events: list[Event] = []
        for line in lines:
            clean = line.replace("\r", "").rstrip()
            if clean.strip():
                self.recent.append(clean if source == "console" else f"[anaconda.log] {clean}")
            event = classify(clean, source)
            if event is None:
                continue
            if isinstance(event, FailureEvent):
                self.failures.append(event)
            elif isinstance(event, ProgressEvent):
                self.packages_done, self.packages_total = event.done, event.total
                self.stage = f"Installing {event.package}"
            elif isinstance(event, StageEvent):
                self.stage = event.text
            else:
                self.complete = True
                self.stage = "Installation complete"
            events.append(event)
        return events

    def flush(self) -> list[Event]:
        """Classify what is left in the partial-line buffers (at the end of the run)."""
        events: list[Event] = []
        for source in ("console", "anaconda"):
            if self._partial[source]:
                events += self.feed(source, "\n")
        return events

    def cause(self) -> FailureEvent | None:
        """The most specific failure seen (lowest rank; the first of equal rank)."""
        return min(self.failures, key=lambda f: f.rank) if self.failures else None

    def details(self) -> str:
        """The last relevant lines, for the error message."""
        return "\n".join(f"  | {line}" for line in self.recent)
