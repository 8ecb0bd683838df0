"""The one shape of a stage, and the context every stage runs in.

A stage is a small object with a name, an error class (its exit code), its own inputs and `run(ctx)`,
which returns a frozen result that round-trips through the build record (`load`). The pipeline
(factory.pipeline) is one loop over a table of stages: it decides skip / resume / re-run, chains each
stage's key from its inputs and the previous stage's key (as osbuild's stage ids do), records, times and
maps errors. Stages never draw: they report through `ctx.progress`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from factory.core.events import Sink, Skip, StageProgress, discard
from factory.core.record import BuildDir, from_jsonable
from factory.errors import FactoryError, InputError
from factory.spec import Spec

R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    """What the command line asked of a run (the same for `build` and the single-stage commands)."""

    promote: bool = False
    verify: bool = True
    from_stage: str | None = None
    keep_on_error: bool = False
    build_root: Path = Path("build")
    # `factory verify --image`: another disk than the build's own.
    image: Path | None = None
    # `factory export --out`: another folder than the build's export/.
    export_dir: Path | None = None
    # `factory promote --only-target`: these targets only.
    only_targets: tuple[str, ...] = ()


@dataclass
class Context:
    """The spec, the build directory (once chosen), the earlier stages' typed results and the sink."""

    spec: Spec
    options: Options = field(default_factory=Options)
    build_dir: BuildDir | None = None
    sink: Sink = discard
    results: dict[str, Any] = field(default_factory=dict)
    # The stage running now: progress events are tagged with it.
    stage: str = ""
    # Values a later stage reuses within one run but that never go into the record (the flattened
    # kickstart: its text can carry password hashes).
    scratch: dict[str, Any] = field(default_factory=dict)
    # The running table's stages by name: a recorded result is loaded by the stage that made it.
    table: dict[str, Stage[Any]] = field(default_factory=dict)

    @property
    def build(self) -> BuildDir:
        if self.build_dir is None:
            raise FactoryError(f"{self.spec.name}: stage {self.stage!r} needs a build directory")
        return self.build_dir

    def result(self, stage: type[Stage[R]]) -> R:
        """An earlier stage's result: from this run, else loaded back from the build record."""
        name = stage.name
        if name not in self.results:
            # Loaded by the stage that made it (the running table's), as the gate reads it.
            loaded = recorded(self.build, self.table.get(name, stage))  # type: ignore[arg-type]
            if loaded is None:
                st = self.build.stage(name) or {}
                raise InputError(
                    f"{self.build.path}: no {name} result (stage {name}: {st.get('status', 'not run')})"
                )
            self.results[name] = loaded
        value: R = self.results[name]
        return value

    def progress(self, detail: str, done: float | None = None, total: float | None = None) -> None:
        self.sink(StageProgress(self.spec.name, self.stage, detail, done, total))


@runtime_checkable
class Stage(Protocol[R]):
    """What the pipeline needs of a stage. Implementations: factory/stages/*/stage.py."""

    name: ClassVar[str]
    # The class of every error this stage raises; anything else it raises is mapped to it.
    error: ClassVar[type[FactoryError]]
    # Whether it works inside a build directory (validate and media run before one is chosen).
    needs_build: ClassVar[bool]
    # Runs whenever it is wanted, even when recorded ok for the same key (publishing: each run checks the
    # platforms' own state and finishes or re-syncs from the targets' manifests).
    always_run: ClassVar[bool]
    result_type: ClassVar[type[Any]]

    def skip(self, ctx: Context) -> Skip | None:
        """Not requested / not needed for this run (None: it may run)."""
        ...

    def inputs(self, ctx: Context) -> str:
        """A digest of what this stage reads besides the previous stage's output ("" if nothing)."""
        ...

    def run(self, ctx: Context) -> R:
        """Do the stage's work and return its result (a failed verdict is a result too: see judge)."""
        ...

    def judge(self, ctx: Context, result: R) -> FactoryError | None:
        """The error a recorded result amounts to (e.g. failed checks), or None when it passed."""
        ...

    @classmethod
    def load(cls, data: Any) -> R:
        """The result back from the record."""
        ...


class BaseStage:
    """Defaults most stages share: always wanted, no own inputs, a result that cannot fail."""

    needs_build: ClassVar[bool] = True
    always_run: ClassVar[bool] = False
    result_type: ClassVar[type[Any]]

    def skip(self, ctx: Context) -> Skip | None:
        return None

    def inputs(self, ctx: Context) -> str:
        return ""

    def judge(self, ctx: Context, result: Any) -> FactoryError | None:
        return None

    @classmethod
    def load(cls, data: Any) -> Any:
        return from_jsonable(cls.result_type, data)


def recorded(build: BuildDir, stage: type[Stage[R]]) -> R | None:
    """A stage's typed result as the build recorded it, when that stage is recorded ok; None otherwise.

    For readers outside a run (the promotion gate); an ok entry that does not load is an input error."""
    st = build.stage(stage.name) or {}
    if st.get("status") != "ok" or st.get("result") is None:
        return None
    value: R = _load(build, stage, st["result"])
    return value


def _load(build: BuildDir, stage: Any, data: Any) -> Any:
    try:
        return stage.load(data)
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(
            f"{build.record_path}: the recorded {stage.name} result is unreadable: {exc}"
        ) from None
