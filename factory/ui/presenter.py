"""One presenter for every stage's events, in one of three modes chosen by where stderr goes.

    live   a terminal: one row per (spec, stage), redrawn in place (rich.live)
    plain  a CI log: one line per start, finish, skip and step (never one per package or chunk)
    json   `--json`: one JSON object per event, so stdout keeps only the final outcome

    with presenter_for(console, mode, prefix_names=len(specs) > 1) as present:
        present(StageStarted("testbed", "install"))

`present` is thread-safe: `factory build -j N` calls it from several builds at once.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from factory.core.events import Event, Sink, Skip, StageFinished, StageProgress, StageStarted

# Totals at least this big are bytes (downloads, uploads); smaller ones are counts (packages, copies).
_BYTES_FROM = 1_000_000
BAR_WIDTH = 24
MARKS = {"ok": "✓", "failed": "✗", "skipped": "-", "stopped": "!"}


class Mode(StrEnum):
    LIVE = "live"
    PLAIN = "plain"
    JSON = "json"


def mode_for(console: Console, *, json_lines: bool) -> Mode:
    if json_lines:
        return Mode.JSON
    return Mode.LIVE if console.is_terminal else Mode.PLAIN


@contextmanager
def presenter_for(console: Console, mode: Mode, *, prefix_names: bool) -> Iterator[Sink]:
    """A sink that shows every event it gets on `console`; on exit nothing is left running on screen."""
    if mode is Mode.LIVE:
        live = LiveRows(prefix_names)
        with Live(console=console, get_renderable=live.render, refresh_per_second=8), _logs_above():
            try:
                yield live
            finally:
                live.close()  # the last refresh (on leaving Live) draws no spinner and no running clock
    elif mode is Mode.PLAIN:
        yield PlainLines(console, prefix_names)
    else:
        with _logs_as_json(console):
            yield JsonLines(console)


@contextmanager
def _logs_above() -> Iterator[None]:
    """Log handlers that write to the terminal go through rich's stderr proxy while the rows are live.

    A warning written straight to the terminal (e.g. "KVM present but ... using TCG") lands below the
    rows; the next redraw moves up over it and leaves a stale copy of the rows above: the duplicated,
    still-spinning rows issue 11 saw. Through the proxy it is printed above the rows instead.
    """
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            stream = handler.stream
            if stream is not sys.stderr and _is_terminal(stream):
                moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


class _JsonLog(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "event": "log",
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            },
            separators=(",", ":"),
        )


@contextmanager
def _logs_as_json(console: Console) -> Iterator[None]:
    """With --json, log lines on the same stream are JSON objects too: stderr stays one object a line."""
    changed: list[tuple[logging.Handler, logging.Formatter | None]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is console.file:
            changed.append((handler, handler.formatter))
            handler.setFormatter(_JsonLog())
    try:
        yield
    finally:
        for handler, formatter in changed:
            handler.setFormatter(formatter)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def label(event: Event, prefix_names: bool) -> str:
    return f"{event.spec}: {event.stage}" if prefix_names else event.stage


def clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def amount(done: float, total: float | None) -> str:
    if total is not None and total >= _BYTES_FROM:
        return f"{decimal(int(done))}/{decimal(int(total))}"
    return f"{int(done)}/{int(total)}" if total is not None else f"{int(done)}"


def skip_text(skip: Skip | None) -> str:
    # A skip without a reason is a bug in whoever sent it: say so rather than guess one.
    return f"skipped: {skip.value}" if skip is not None else "skipped (no reason given)"


@dataclass
class _Row:
    label: str
    started: float  # time.monotonic() when the row appeared
    status: str = "running"  # running, ok, failed, skipped, stopped
    seconds: float | None = None  # frozen elapsed time once the stage ended
    detail: str = ""
    done: float | None = None
    total: float | None = None
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="cyan"))


class LiveRows:
    """Rows for a rich Live display: created on a stage's start (or its skip), updated in place."""

    def __init__(self, prefix_names: bool) -> None:
        self.prefix = prefix_names
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str], _Row] = {}
        self.specs: list[str] = []  # first-seen order: with -j the rows stay grouped by spec

    def __call__(self, event: Event) -> None:
        with self.lock:
            key = (event.spec, event.stage)
            row = self.rows.get(key)
            if row is None or (isinstance(event, StageStarted) and row.status != "running"):
                # A stage that starts again (a retry, --from) takes over its own row: never a second one.
                row = _Row(label(event, self.prefix), time.monotonic())
                self.rows[key] = row
                if event.spec not in self.specs:
                    self.specs.append(event.spec)
            if isinstance(event, StageProgress):
                if row.status == "running":
                    row.detail = event.detail
                    if event.done is not None:
                        row.done, row.total = event.done, event.total
            elif isinstance(event, StageFinished):
                row.status = event.status
                row.seconds = event.seconds
                if event.status == "skipped":
                    row.detail, row.done, row.total = skip_text(event.skip), None, None
                elif event.status == "failed":
                    row.detail = event.error or row.detail
                else:
                    row.detail = ""
                    if row.total is not None:
                        row.done = row.total

    def close(self) -> None:
        """The build is over: a row still running stops with its clock frozen (no spinner afterwards)."""
        with self.lock:
            now = time.monotonic()
            for row in self.rows.values():
                if row.status == "running":
                    row.status, row.seconds = "stopped", now - row.started
                    row.detail = "did not finish"

    def render(self) -> RenderableType:
        with self.lock:
            now = time.monotonic()
            table = Table.grid(padding=(0, 1))
            table.add_column(width=1, no_wrap=True)
            table.add_column(no_wrap=True)
            table.add_column(justify="right", no_wrap=True)
            table.add_column(no_wrap=True)
            # The only column rich may narrow when a row is too wide (a long error): its text is cut with
            # "…" (Text no_wrap), so every row stays one line and the mark, label and clock stay whole.
            table.add_column()
            order = sorted(self.rows.items(), key=lambda kv: self.specs.index(kv[0][0]))
            for _, row in order:
                table.add_row(*self._cells(row, now))
            return table

    def _cells(self, row: _Row, now: float) -> tuple[RenderableType, ...]:
        running = row.status == "running"
        mark: RenderableType = row.spinner if running else _mark(row.status)
        elapsed = "" if row.status == "skipped" else clock(now - row.started if running else row.seconds or 0)
        bar: RenderableType = ""
        if row.done is not None:
            bar = _bar(row.done, row.total)
        style = {"failed": "red", "skipped": "dim", "stopped": "yellow"}.get(row.status, "dim")
        detail = Text(row.detail, style=style, no_wrap=True, overflow="ellipsis")
        return mark, Text(row.label), Text(elapsed), bar, detail


def _bar(done: float, total: float | None) -> Text:
    """Filled and empty parts in different glyphs, not only colours: readable in a log or a screen dump."""
    if not total:
        return Text(amount(done, None))
    filled = round(BAR_WIDTH * min(max(done, 0.0), total) / total)
    return Text.assemble(
        ("━" * filled, "green"), ("─" * (BAR_WIDTH - filled), "grey35"), " ", amount(done, total)
    )


def _mark(status: str) -> Text:
    return Text(MARKS.get(status, "?"), style={"ok": "green", "failed": "red"}.get(status, "dim"))


class PlainLines:
    """A CI log: a line per start, finish, skip and step; a counted step only at its start and end."""

    def __init__(self, console: Console, prefix_names: bool) -> None:
        self.console = console
        self.prefix = prefix_names
        self.lock = threading.Lock()
        self.last_detail: dict[tuple[str, str], str] = {}

    def __call__(self, event: Event) -> None:
        line = self.line(event)
        if line is not None:
            with self.lock:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def line(self, event: Event) -> str | None:
        name = label(event, self.prefix)
        if isinstance(event, StageStarted):
            return f"{name}: started"
        if isinstance(event, StageProgress):
            text = event.detail
            if event.done is not None:
                # A counted step (bytes, packages) logs its start and its end, not every count between.
                ends = event.done == 0 or (event.total is not None and event.done >= event.total)
                if not ends:
                    return None
                text = f"{event.detail} ({amount(event.done, event.total)})"
            key = (event.spec, event.stage)
            with self.lock:
                if text == self.last_detail.get(key):
                    return None
                self.last_detail[key] = text
            return f"{name}: {text}"
        if event.status == "skipped":
            return f"{name}: {skip_text(event.skip)}"
        if event.status == "failed":
            return f"{name}: failed ({event.seconds:.1f} s)" + (f": {event.error}" if event.error else "")
        return f"{name}: {event.status} ({event.seconds:.1f} s)"


KINDS: dict[type, str] = {StageStarted: "started", StageProgress: "progress", StageFinished: "finished"}


class JsonLines:
    """`--json`: every event as one JSON object on its own line (stderr; stdout has the outcome)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        text = json.dumps({"event": KINDS[type(event)], **asdict(event)}, separators=(",", ":"))
        with self.lock:
            # Straight to the file: rich would wrap a long line at the console width.
            self.console.file.write(text + "\n")
            self.console.file.flush()
