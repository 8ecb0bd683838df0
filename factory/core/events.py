"""What stages report while a build runs; one presenter (factory.ui) draws them.

Stages never draw anything themselves: they send these through the pipeline's sink, which adds the spec
name. The presenter decides whether that becomes a live row on a terminal, a plain line in a CI log or a
JSON line (`--json`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Skip(StrEnum):
    """Why a stage did not run: the presenter shows exactly this, never a guess."""

    NOT_REQUESTED = "not requested"  # e.g. promote without --promote, verify with --no-verify
    DONE_BEFORE = "done before for this image"  # recorded ok for the same inputs in this build directory
    NOT_NEEDED = "not needed"  # e.g. compliance for a spec without a compliance section


@dataclass(frozen=True)
class StageStarted:
    spec: str
    stage: str


@dataclass(frozen=True)
class StageProgress:
    """Work inside a stage: `done`/`total` for a bar (bytes, packages), or only `detail` (a step)."""

    spec: str
    stage: str
    detail: str
    done: float | None = None
    total: float | None = None


@dataclass(frozen=True)
class StageFinished:
    """A stage ended: status "ok", "failed" or "skipped" (then `skip` says why)."""

    spec: str
    stage: str
    status: str
    seconds: float
    skip: Skip | None = None
    error: str | None = None


Event = StageStarted | StageProgress | StageFinished
Sink = Callable[[Event], None]


def discard(event: Event) -> None:
    """A sink for callers that show nothing (plan, tests)."""
    return None
