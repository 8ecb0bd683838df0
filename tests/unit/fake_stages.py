"""Small stages with the real stage interface, for testing the pipeline's loop without booting anything.

Each fake records that it ran, returns a typed frozen result and can be told to fail, to be unwanted or to
read different inputs; `table()` gives the build's table of names with fakes in it (a real stage may be
put in, e.g. the compliance stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from factory.core.events import Event, Skip
from factory.errors import FactoryError, MediaError, VerifyError
from factory.stages.base import BaseStage, Context


@dataclass(frozen=True)
class FakeResult:
    stage: str
    value: str = "ok"
    passed: bool = True
    # what the seal stage returns (export and compliance read them)
    sealed_image: Path = Path("sealed.qcow2")
    sealed_sha256: str = "e" * 64
    # what the media stage returns (the build key reads it)
    iso: Path = Path("x.iso")
    sha256: str = "a" * 64


@dataclass
class Log:
    calls: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def sink(self, event: Event) -> None:
        self.events.append(event)


@dataclass
class FakeStage(BaseStage):
    stage_name: str
    log: Log
    needs: bool = True
    own_inputs: str = ""
    raises: BaseException | None = None
    passes: bool = True
    not_wanted: Skip | None = None
    result_value: str = "ok"
    result: FakeResult | None = None
    runs_always: bool = False

    error: ClassVar[type[FactoryError]] = VerifyError
    result_type = FakeResult

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.stage_name

    @property
    def needs_build(self) -> bool:  # type: ignore[override]
        return self.needs

    @property
    def always_run(self) -> bool:  # type: ignore[override]
        return self.runs_always

    def skip(self, ctx: Context) -> Skip | None:
        return self.not_wanted

    def inputs(self, ctx: Context) -> str:
        return self.own_inputs

    def run(self, ctx: Context) -> FakeResult:
        self.log.calls.append(self.stage_name)
        if self.raises is not None:
            raise self.raises
        if self.stage_name == "install":
            ctx.build.disk.write_bytes(b"disk")
        return self.result or FakeResult(self.stage_name, self.result_value, self.passes)

    def judge(self, ctx: Context, result: Any) -> FactoryError | None:
        return None if result.passed else VerifyError(f"{self.stage_name}: failed its checks")


NAMES = ("validate", "media", "install", "verify", "seal", "compliance", "export", "promote")


def table(log: Log, **overrides: Any) -> dict[str, Any]:
    """name -> stage: fakes for every stage of the build's table; `overrides` replace or configure some
    (a dict of FakeStage fields, or a stage object)."""
    stages: dict[str, Any] = {}
    for name in NAMES:
        over = overrides.get(name, {})
        if not isinstance(over, dict):
            stages[name] = over
            continue
        defaults: dict[str, Any] = {
            "compliance": {"not_wanted": Skip.NOT_NEEDED},
            "promote": {"not_wanted": Skip.NOT_REQUESTED},
        }.get(name, {})
        stages[name] = FakeStage(name, log, needs=name not in ("validate", "media"), **{**defaults, **over})
    return stages


class MediaFailure(MediaError):
    """What a media stage raises when the download fails."""
