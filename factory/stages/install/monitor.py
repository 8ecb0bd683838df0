"""Watching an install: console and installer-log lines in, events out (progress, stage, failure, done).

Pure and unit-testable: no I/O, no clock. One table maps failure markers to stable kinds; the markers are
the ones lorax and anaconda's kickstart-tests look for, plus the kernel's, dracut's and anaconda 21.48's
own texts (EL 7.2). A failure's message quotes its reason: the matched line's own text after the marker,
else the lines that follow it (anaconda prints the cause on the next lines), never the marker twice.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["console", "anaconda"]


@dataclass(frozen=True)
class Marker:
    pattern: re.Pattern[str]
    kind: str
    # Lower = more specific; when several failures show up together the most specific names the cause.
    rank: int
    what: str
    # How many following lines (same source) may hold the reason when the line itself has none.
    follow: int = 0
    # The source the marker means something in (None: both).
    only: Source | None = None


def _m(regex: str, kind: str, rank: int, what: str, *, follow: int = 0, only: Source | None = None) -> Marker:
    return Marker(re.compile(regex), kind, rank, what, follow, only)


# THE table: marker -> failure kind. A named group `reason` is the line's own explanation.
FAILURE_MARKERS: tuple[Marker, ...] = (
    _m(r"Kernel panic - not syncing:?\s*(?P<reason>.*)", "kernel-panic", 0, "the kernel panicked"),
    _m(r"The following problem occurred on (?P<reason>line \d+) of the kickstart file", "kickstart-error", 1,
       "the installer rejected the kickstart", follow=3),
    # dracut's fetch-kickstart-net.sh: one attempt per interface, then anaconda starts without it.
    _m(r"Warning: failed to fetch kickstart from (?P<reason>\S+)", "kickstart-not-fetched", 1,
       "dracut could not fetch the kickstart"),
    _m(r"There was an error running the kickstart script at (?P<reason>line \d+)", "post-failed", 2,
       "a %post --erroronfail script failed", follow=8),
    # yumpayload._handleMissing in cmdline mode (console and anaconda.log).
    _m(r"CmdlineError: Missing package: (?P<reason>.+?)\.?$", "missing-package", 2,
       "a %packages entry is not on the media"),
    _m(r"You have specified that the package '(?P<reason>[^']*)' should be installed\.\s+This package does "
       r"not exist", "missing-package", 2, "a %packages entry is not on the media"),
    # The text hub (summary.py) only prompts when a mandatory spoke is incomplete; the other TUI prompts
    # (spokes, the one-spoke hub) wait for a key just the same. Nobody types in an unattended install.
    _m(r"Please make your choice from (?:above \[|\[ '1' to enter)", "needs-input", 2,
       "the installer is waiting for input at its text UI", only="console"),
    _m(r"Please respond '\w+' or '\w+':", "needs-input", 2,
       "the installer is waiting for a yes/no answer", only="console"),
    _m(r"dracut(?:\[\d+\])?: FATAL:\s*(?P<reason>.*)", "dracut-fatal", 2,
       "the installer's initramfs gave up"),
    # exception.py in cmdline mode: the cause follows "The exact error message is:".
    _m(r"The installation was stopped due to incomplete spokes detected while running in non-interactive "
       r"cmdline mode", "cmdline-error", 3, "anaconda stopped (cmdline mode)", follow=6),
    _m(r"Running in cmdline mode, no interactive debugging allowed", "cmdline-error", 3,
       "anaconda stopped (cmdline mode)", follow=6),
    _m(r"Traceback \(", "traceback", 3, "the installer crashed with a traceback", follow=60),
    # A traceback whose header scrolled away or was lost on the serial line: its frames say enough. Console
    # only: the installer log also carries tracebacks of handled exceptions (blivet logs them at DEBUG).
    _m(r"^\s*File \"[^\"]+\", line \d+, in \S+\s*$", "traceback", 3,
       "the installer crashed with a traceback", follow=60, only="console"),
    # anaconda-yum's populate-transaction retry (EL 7.2 and later 7.x wording): unreadable media or an
    # HTTP server without range requests; its output never stops, so no idle timer would fire.
    _m(r"(?P<reason>[Ee]rror populating transaction,(?: anaconda is)? retrying \(\d+/\d+\))",
       "packaging-retry", 3, "package installation is stuck in anaconda's retry loop"),
    _m(r"[Ee]rror populating transaction after \d+ (?:anaconda )?retries:?\s*(?P<reason>.*)",
       "packaging-retry", 3, "anaconda gave up reading the packages"),
    _m(r"packaging: Installation failed:?\s*(?P<reason>.*)", "packaging-failed", 4,
       "package installation failed"),
    _m(r"storage configuration failed:?\s*(?P<reason>.*)", "storage-failed", 4,
       "storage configuration failed", follow=2),
    _m(r"Out of memory:\s*(?P<reason>.*)", "out-of-memory", 5, "the guest ran out of memory"),
    _m(r"crashed on signal", "crashed-on-signal", 5, "an installer process crashed on a signal"),
    # The kernel's oops headers (x86, 3.10 and later); the lines after them name the function and process.
    _m(r"(?P<reason>general protection fault[:,].*)", "kernel-oops", 5, "the kernel oopsed", follow=12),
    _m(r"(?P<reason>BUG: unable to handle kernel .*)", "kernel-oops", 5, "the kernel oopsed", follow=12),
    _m(r"(?P<reason>kernel BUG at \S+)", "kernel-oops", 5, "the kernel oopsed", follow=12),
    _m(r"(?P<reason>\bOops: (?:[0-9a-f]{4} )?\[#\d+\].*)", "kernel-oops", 5, "the kernel oopsed", follow=12),
    _m(r"Call Trace:", "kernel-oops", 6, "the kernel printed a call trace"),
    _m(r"dracut-initqueue\[\d+\]: Warning: dracut-initqueue timeout", "dracut-timeout", 6,
       "dracut timed out waiting for the install media or root"),
    _m(r"dracut-initqueue\[\d+\]: Warning: Could not boot", "dracut-timeout", 6,
       "dracut could not boot the installer"),
    _m(r"Entering emergency mode", "emergency-mode", 7, "the installer's initramfs gave up (emergency mode)"),
    # kernel_halt(): with -no-reboot QEMU exits on power-off and reset, never on a halt.
    _m(r"^(?:reboot: )?System halted\.?$", "halted", 8, "the guest halted instead of powering off",
       only="console"),
    # An anaconda.log line at level CRIT (lorax's check); least specific, the console usually says more.
    _m(r"(^|[\s,:])CRIT(\s|:)", "critical", 9, "the installer logged a critical error", only="anaconda"),
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
# Strips anaconda.log's "HH:MM:SS,mmm LEVEL anaconda: " prefix and the kernel's "[  12.345678] " for display.
_LOG_PREFIX = re.compile(r"^\d\d:\d\d:\d\d,\d+ \w+ [\w.-]+:\s*")
_KERNEL_TIME = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# Prompts anaconda prints without a line end (raw_input): classified while still a partial line.
_OPEN_PROMPT = re.compile(r"Please respond '\w+' or '\w+':\s*$")


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
    # The line's own explanation (the marker's `reason` group), '' when the following lines must say it.
    reason: str = ""


@dataclass(frozen=True)
class CompleteEvent:
    line: str


Event = ProgressEvent | StageEvent | FailureEvent | CompleteEvent


def _display(text: str) -> str:
    return _KERNEL_TIME.sub("", _LOG_PREFIX.sub("", text.strip())).strip()


def _match(text: str, source: Source) -> tuple[Marker, FailureEvent] | None:
    for marker in FAILURE_MARKERS:
        # CRIT is a log level: only the installer log has levels (a console line saying CRIT is not one).
        if marker.only is not None and marker.only != source:
            continue
        # Anchored markers look at the line without the log/kernel prefix.
        m = marker.pattern.search(_display(text) if marker.pattern.pattern.startswith("^") else text)
        if m:
            reason = (m.groupdict().get("reason") or "").strip()
            return marker, FailureEvent(marker.kind, marker.what, text, source, marker.rank, reason)
    return None


def classify(line: str, source: Source = "console") -> Event | None:
    """One line -> at most one event. Failures win over progress and stages."""
    text = line.strip("\r\n\0 ")
    if not text:
        return None
    if found := _match(text, source):
        return found[1]
    if m := PROGRESS.search(text):
        return ProgressEvent(m["package"], int(m["done"]), int(m["total"]))
    if COMPLETE.search(text):
        return CompleteEvent(text)
    if m := STAGES.search(text):
        return StageEvent(_LOG_PREFIX.sub("", m.group(0)).strip())
    return None


# ------------------------------------------------------------------ anaconda 21.48's text hub
# TUIHub.refresh: two 39-column spoke columns 2 apart; each spoke is "NN) [k] Title" with its status in
# parentheses below the title, hard-wrapped (mid-word) at 31 columns; k is "!" for a mandatory incomplete
# spoke. The screen starts with two lines of "=" (App._spacer).
_SPOKE = re.compile(r"(?<!\S)(?P<num>\d{1,2})\) \[(?P<key>.)\] ")
_SEPARATOR = re.compile(r"^={20,}$")
_HUB_TEXT_WIDTH = 31


@dataclass
class _Spoke:
    key: str
    title: str
    column: int  # where its title starts
    status: list[str] = field(default_factory=list)

    def text(self) -> str:
        joined, previous = "", ""
        for piece in self.status:
            # A full-width piece was cut mid-word; a shorter one ended at a space the line lost.
            glue = "" if not joined or len(previous) >= _HUB_TEXT_WIDTH else " "
            joined, previous = joined + glue + piece, piece
        status = joined[1:-1] if joined.startswith("(") and joined.endswith(")") else joined
        return f"{self.title} ({status})" if status else self.title


def hub_incomplete(screen: list[str]) -> list[str]:
    """The spokes a text hub screen marks [!] (mandatory, incomplete), each with its status."""
    spokes: list[_Spoke] = []
    row: list[_Spoke] = []
    for line in screen:
        if _SEPARATOR.match(line.strip()):
            spokes, row = [], []
            continue
        matches = list(_SPOKE.finditer(line))
        if matches:
            row = []
            for i, m in enumerate(matches):
                end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
                row.append(_Spoke(m["key"], line[m.end() : end].strip(), m.end()))
            spokes += row
            continue
        if not line.startswith("    ") or not row:
            continue  # kernel messages between screen lines; the prompt
        for i, spoke in enumerate(row):
            end = row[i + 1].column - 8 if i + 1 < len(row) else len(line)
            piece = line[spoke.column : end].strip()
            if piece:
                spoke.status.append(piece)
    return [s.text() for s in spokes if s.key == "!"]


# ------------------------------------------------------------------ reasons
# An exception line ends a traceback, unindented: "TypeError: ...", "pyanaconda.errors.CmdlineError: ...".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(:.*)?$")
_FRAME = re.compile(r'^\s*File "[^"]+", line \d+, in \S+')
_OOPS_WHERE = re.compile(
    r"\bR?IP:\s+(?:[0-9a-f]{4}:)?(?:\[<[0-9a-f]+>\]\s*)*(?P<fn>[\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[\w+\])?)"
)
_OOPS_COMM = re.compile(r"\bComm: (?P<comm>\S+)")
_CURL_ERROR = re.compile(r"curl: \(\d+\) .*")
_TRACE_HEADER = re.compile(r"\b(WARNING: (?:at|CPU)|INFO: task .* blocked|BUG: |INFO: rcu_sched)")
# Lines around anaconda's cmdline-mode message that frame the cause rather than state it.
_FRAMING = re.compile(
    r"^(The exact error message is:?|The installer will now terminate\.?|Since there cannot be any "
    r"questions.*)$"
)


def _joined(lines: list[str]) -> str:
    out = ""
    for line in lines:
        # anaconda ends "%s." around the cause; an ellipsis stays.
        text = line.rstrip(".") if line.endswith(".") and not line.endswith("..") else line
        out += text if not out else (" " if out.endswith(":") else "; ") + text
    return out


@dataclass
class _Seen:
    """A failure and the lines around it (same source), for its message."""

    event: FailureEvent
    marker: Marker | None
    before: list[str]
    after: list[str] = field(default_factory=list)


def _reason(seen: _Seen, others: list[_Seen]) -> str:
    event = seen.event
    after = [_display(line) for line in seen.after if line.strip()]
    if event.kind == "needs-input":
        spokes = hub_incomplete(seen.before)
        return "incomplete: " + "; ".join(spokes) if spokes else _display(event.line)
    if event.kind == "traceback":
        lines = [_display(seen.event.line), *after]
        raised = [line for line in lines if _EXCEPTION_LINE.match(line) and not _FRAME.match(line)]
        if raised:
            return raised[0]
        frames = [line for line in lines if _FRAME.match(line)]
        return f"last frame: {frames[-1]}" if frames else ""  # the header alone says nothing more
    if event.kind == "kernel-oops" and not event.reason:
        # A bare "Call Trace:" follows its header (WARNING:, INFO: task ... blocked, BUG:): quote that.
        headers = [_display(line) for line in seen.before[-30:] if _TRACE_HEADER.search(line)]
        return headers[-1] if headers else ""
    if event.kind == "kernel-oops":
        extra: list[str] = []
        for line in after:
            if (m := _OOPS_WHERE.search(line)) and not any(e.startswith("in ") for e in extra):
                extra.append(f"in {m['fn']}")
            if (m := _OOPS_COMM.search(line)) and not any(e.startswith("process ") for e in extra):
                extra.append(f"process {m['comm']}")
        return event.reason + (f" ({', '.join(extra)})" if extra else "")
    if event.kind == "kernel-panic" and re.match(r"Fatal exception", event.reason):
        # "Fatal exception" says only that an oops came first: name that oops.
        oops = [o for o in others if o.event.kind == "kernel-oops" and o.event.reason]
        if oops:
            return f"{event.reason} after {_reason(oops[0], others)}"
    if event.kind == "kickstart-not-fetched":
        curl = [m.group(0) for line in seen.before[-5:] if (m := _CURL_ERROR.search(line))]
        return event.reason + (f" ({curl[-1]})" if curl else "")
    if event.kind == "post-failed":
        # errors.py: "... at line N.  This is a fatal error and installation will be aborted.  The details of
        # this error are:\n\n<the script's output>" (wrapped to the screen): the output is the reason.
        marks = [i for i, line in enumerate(after) if "details of this error are" in line]
        details = after[marks[0] + 1 :] if marks else []
        return f"{event.reason}: {details[0]}" if details else f"{event.reason} (the script printed nothing)"
    if event.kind == "cmdline-error":
        cause = [line for line in after if not _FRAMING.match(line)]
        return _joined(cause) if cause else _display(event.line)
    if event.reason:
        if seen.marker is not None and seen.marker.follow and re.fullmatch(r"line \d+", event.reason):
            # "on line 12 of the kickstart file:" -- the problem itself is on the next line.
            return f"{event.reason}: {after[0]}" if after else event.reason
        return event.reason
    if seen.marker is not None and seen.marker.follow and after:
        return after[0]
    line = _display(event.line)
    matched = seen.marker.pattern.search(line) if seen.marker is not None else None
    # A line that is only its marker ("Call Trace:") adds nothing to `what`.
    return "" if matched is not None and matched.group(0).strip() == line else line


class Monitor:
    """Feeds chunks of console/log text through `classify`, keeping partial lines and recent context."""

    def __init__(self, context_lines: int = 15) -> None:
        self._partial: dict[Source, str] = {"console": "", "anaconda": ""}
        self.recent: deque[str] = deque(maxlen=context_lines)
        # The console's last screenful (a text hub is ~20 lines), for needs-input's spoke names.
        self._screen: deque[str] = deque(maxlen=60)
        self._logs: dict[Source, deque[str]] = {"console": self._screen, "anaconda": deque(maxlen=10)}
        self._seen: list[_Seen] = []
        self._prompted = ""  # the open prompt already reported (see _OPEN_PROMPT)
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
            reported = source == "console" and self._prompted and clean == self._prompted
            self._prompted = "" if source == "console" else self._prompted
            event = None if reported else classify(clean, source)
            if isinstance(event, FailureEvent):
                self._remember(event, source)
            self._note(source, clean)
            if event is not None:
                events.append(self._apply(event))
        # anaconda's raw_input prompts have no line end: one waiting for an answer is a failure now.
        partial = self._partial[source].replace("\r", "").rstrip()
        if source == "console" and not self._prompted and _OPEN_PROMPT.search(partial):
            self._prompted = partial
            event = classify(partial, source)
            if isinstance(event, FailureEvent):
                self._remember(event, source)
                events.append(self._apply(event))
        return events

    def _remember(self, event: FailureEvent, source: Source) -> None:
        found = _match(event.line, source)
        self._seen.append(_Seen(event, found[0] if found else None, list(self._logs[source])))

    def _note(self, source: Source, clean: str) -> None:
        for seen in self._seen:
            wants = seen.marker is not None and len(seen.after) < seen.marker.follow
            # The marker's own line is noted right after it was remembered: it is not a following line.
            if wants and seen.event.source == source and (seen.after or clean.strip() != seen.event.line):
                seen.after.append(clean)
        self._logs[source].append(clean)

    def _apply(self, event: Event) -> Event:
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
        return event

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

    def message(self, failure: FailureEvent | None = None) -> str:
        """'<what>: <reason>' for `failure` (default: the cause), the reason quoted from the lines seen."""
        failure = failure or self.cause()
        if failure is None:
            return ""
        seen = next(s for s in self._seen if s.event is failure)
        reason = _reason(seen, self._seen)
        # Never "storage configuration failed: storage configuration failed: ...".
        if reason.lower().startswith(failure.what.lower()):
            reason = reason[len(failure.what) :].lstrip(" :")
        return f"{failure.what}: {reason}" if reason else failure.what

    def details(self) -> str:
        """The last relevant lines, for the error message."""
        return "\n".join(f"  | {line}" for line in self.recent)
