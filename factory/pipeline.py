"""`factory build`: one loop over the table of stages, each timed, recorded, and skipped when done before.

    validate -> media -> install -> verify -> seal [-> compliance] -> export [-> promote]

Every stage has one shape (factory.stages.base.Stage: `run(ctx) -> Result`). This loop alone decides what
runs, records it, times it, reports it as events and maps its errors:

- a stage may be skipped because it was **not requested** (promote without --promote) or is **not
  needed** (compliance without a compliance section): the stage itself says so;
- its key chains its own inputs to the key of the stage before it (as osbuild's stage ids do); a stage
  recorded ok with the same key is **done before for this image** and skipped, unless `--from` names it
  or an earlier stage ran again in this run (then it and everything after it run too);
- a build directory is chosen by the build key (ISO, flattened kickstart, spec, factory version): the
  same inputs reopen the same directory, so an unchanged input set reuses the verified image.

`factory verify`, `export` and `promote` run a subset of the same table through `run_stages`, so the
bookkeeping exists once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory import __version__
from factory.core import buildlog, digest
from factory.core.events import Sink, Skip, StageFinished, StageStarted
from factory.core.record import BuildDir, to_jsonable
from factory.errors import FactoryError, Interrupted
from factory.spec import Spec
from factory.stages.base import Context, Options, Stage
from factory.stages.compliance.stage import ComplianceStage
from factory.stages.export.stage import ExportStage
from factory.stages.install.stage import InstallStage
from factory.stages.media.stage import MediaStage
from factory.stages.promote.stage import PromoteResult, PromoteStage
from factory.stages.seal.stage import SealStage
from factory.stages.validate.stage import ValidateStage, kickstart_text
from factory.stages.verify.stage import VerifyStage

log = logging.getLogger(__name__)

STAGES: tuple[Stage[Any], ...] = (
    ValidateStage(),
    MediaStage(),
    InstallStage(),
    VerifyStage(),
    SealStage(),
    ComplianceStage(),
    ExportStage(),
    PromoteStage(),
)
BUILD_STAGES = tuple(s.name for s in STAGES)

__all__ = ["BUILD_STAGES", "STAGES", "Options", "Outcome", "run_build", "run_stages"]


@dataclass
class Outcome:
    """What one spec's build did, for the final table and --json."""

    spec: str
    build_dir: Path | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {status, seconds[, skip]}
    image_sha256: str | None = None
    # "profile: N passed / N failed / N waived" when the spec has a compliance section and it was scanned.
    compliance: str | None = None
    amis: dict[str, dict[str, str]] = field(default_factory=dict)
    # target key -> what it published (factory.targets.base.Published)
    published: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int = 0
    exception: FactoryError | None = None


def build_key(iso_sha256: str, kickstart_text: str, spec: Spec) -> str:
    return digest.combine(iso_sha256, digest.sha256_text(kickstart_text), spec.digest(), __version__)


def build_inputs(spec: Spec, iso_sha256: str, kickstart: str | None = None) -> tuple[str, dict[str, str]]:
    """The build key and the input hashes it is made of (recorded; `factory plan` compares them)."""
    if kickstart is None:
        from factory.stages.validate.flatten import flatten_for_spec

        kickstart = flatten_for_spec(spec).text
    inputs = {
        "iso_sha256": iso_sha256,
        "kickstart_sha256": digest.sha256_text(kickstart),
        "spec_sha256": spec.digest(),
        "factory_version": __version__,
    }
    return build_key(iso_sha256, kickstart, spec), inputs


def find_build(root: Path, spec_name: str, key: str | None, stage: str = "install") -> BuildDir | None:
    """The newest build of this spec with the same input key (None: any key) whose `stage` succeeded (the
    install: a build to resume; verify: a verified image that makes a rebuild pointless)."""
    spec_dir = root / spec_name
    if not spec_dir.is_dir():
        return None
    for path in sorted(spec_dir.iterdir(), reverse=True):
        if not BuildDir.is_build(path):
            continue
        try:
            build = BuildDir.open(path)
        except FactoryError:
            continue
        if (key is None or build.record.get("key") == key) and build.stage_ok(stage):
            return build
    return None


class Runner:
    """Runs `stages` (a slice of STAGES, in its order) over one context."""

    def __init__(
        self,
        ctx: Context,
        stages: Sequence[Stage[Any]],
        *,
        force: bool = False,
        table: Sequence[Stage[Any]] = STAGES,
    ) -> None:
        self.ctx = ctx
        self.stages = stages
        # The whole table, in order: a stage's key chains from the nearest earlier one in it.
        self.order = [s.name for s in table]
        ctx.table = {s.name: s for s in table}
        self.outcome = Outcome(spec=ctx.spec.name, build_dir=ctx.build_dir.path if ctx.build_dir else None)
        # Set once a build stage runs (or --from is reached): every stage after it runs too.
        self.forced = force
        self.keys: dict[str, str] = {}
        self._pending: list[tuple[Stage[Any], str, Any, float]] = []  # ran before the build dir existed
        self._log = contextlib.ExitStack()

    def run(self) -> Outcome:
        with self._log:
            if self.ctx.build_dir is not None:
                self._log.enter_context(buildlog.capture(self.ctx.build.log))
            for stage in self.stages:
                self._step(stage)
        return self.outcome

    def _step(self, stage: Stage[Any]) -> None:
        ctx = self.ctx
        ctx.stage = stage.name
        if ctx.options.from_stage == stage.name:
            self.forced = True  # also when that stage is not needed: what follows it runs again
        reason = stage.skip(ctx)
        if reason is not None:
            self._finish(stage, "skipped", 0.0, skip=reason)
            return
        if stage.needs_build and ctx.build_dir is None:
            self._open_build()
        own = stage.inputs(ctx)
        key = digest.combine(self._previous_key(stage), stage.name, own)
        self.keys[stage.name] = key
        if stage.needs_build and not self.forced and not stage.always_run:
            st = ctx.build.stage(stage.name) or {}
            if st.get("status") == "ok" and st.get("key") == key:
                self._finish(stage, "skipped", 0.0, skip=Skip.DONE_BEFORE)
                return
        if stage.needs_build:
            self.forced = True  # its output is new: what follows it must be made again
        self._run(stage, key, own)

    def _previous_key(self, stage: Stage[Any]) -> str:
        """The key of the nearest earlier stage of the table that has one (computed now or recorded)."""
        names = self.order
        for name in reversed(names[: names.index(stage.name)] if stage.name in names else []):
            if name in self.keys:
                return self.keys[name]
            if self.ctx.build_dir is not None and self.ctx.build.stage_ok(name):
                recorded = (self.ctx.build.stage(name) or {}).get("key")
                if recorded:
                    return str(recorded)
        return ""

    def _run(self, stage: Stage[Any], key: str, own: str) -> None:
        ctx = self.ctx
        ctx.sink(StageStarted(ctx.spec.name, stage.name))
        started = time.monotonic()
        build = ctx.build_dir if stage.needs_build else None
        if build is not None:
            build.record["stages"][stage.name] = {"status": "running"}
            build.save()
        try:
            result = stage.run(ctx)
        except FactoryError as exc:
            self._failed(stage, build, started, (key, own), exc)
            raise
        except KeyboardInterrupt:
            self._failed(stage, build, started, (key, own), Interrupted(f"{stage.name}: interrupted"))
            raise
        except Exception as exc:
            # A stage's own bug or an OS error it did not expect: one line on the terminal in the stage's
            # error class (its exit code), the traceback in factory.log.
            log.exception("stage %s failed", stage.name)
            mapped = stage.error(f"{stage.name}: {type(exc).__name__}: {exc}")
            self._failed(stage, build, started, (key, own), mapped)
            raise mapped from exc
        ctx.results[stage.name] = result
        verdict = stage.judge(ctx, result)
        seconds = time.monotonic() - started
        if build is None:
            self._pending.append((stage, key, result, seconds))
        else:
            build.record_stage(
                stage.name,
                "failed" if verdict else "ok",
                result=result,
                inputs=own or None,
                started=started,
                error=verdict.message if verdict else None,
                key=key,
            )
        if verdict is not None:
            # Recorded *with* its result (counts, report), so the gate refuses it and the record says why.
            self._finish(stage, "failed", seconds, error=verdict.message)
            raise verdict
        self._finish(stage, "ok", seconds)

    def _failed(
        self,
        stage: Stage[Any],
        build: BuildDir | None,
        started: float,
        ids: tuple[str, str],
        exc: FactoryError,
    ) -> None:
        key, own = ids
        if build is not None:
            build.record_stage(
                stage.name, "failed", inputs=own or None, started=started, error=exc.message, key=key
            )
        self._finish(stage, "failed", time.monotonic() - started, error=exc.message)

    def _finish(
        self,
        stage: Stage[Any],
        status: str,
        seconds: float,
        *,
        skip: Skip | None = None,
        error: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {"status": status, "seconds": round(seconds, 1)}
        if skip is not None:
            entry["skip"] = skip.value
        self.outcome.stages[stage.name] = entry
        self.ctx.sink(StageFinished(self.ctx.spec.name, stage.name, status, seconds, skip=skip, error=error))

    def _open_build(self) -> None:
        """The build directory of this input set: reopened when it exists, else made; the stages that ran
        before it existed (validate, media) are recorded in it now."""
        ctx = self.ctx
        media = ctx.result(MediaStage)
        key, inputs = build_inputs(ctx.spec, media.sha256, kickstart_text(ctx))
        build = find_build(ctx.options.build_root, ctx.spec.name, key)
        if build is None:
            build = BuildDir.create(ctx.options.build_root, ctx.spec.name)
            build.set("key", key)
            build.set("inputs", inputs)
        ctx.build_dir = build
        self.outcome.build_dir = build.path
        self._log.enter_context(buildlog.capture(build.log))
        for stage, stage_key, result, _ in self._pending:
            build.record_stage(stage.name, "ok", result=result, key=stage_key)
        self._pending.clear()


def run_stages(ctx: Context, names: Sequence[str]) -> Outcome:
    """Run just these stages of the table on an existing build (`factory verify`, `export`, `promote`):
    always run, recorded, keyed and reported exactly as in a build."""
    chosen = [s for s in STAGES if s.name in names]
    return run_stage_objects(ctx, chosen)


def run_stage_objects(ctx: Context, stages: Sequence[Stage[Any]]) -> Outcome:
    """run_stages with stage objects configured by the caller (e.g. a verify that does not generalise)."""
    return Runner(ctx, stages, force=True).run()


def run_build(spec: Spec, options: Options, sink: Sink, stages: Sequence[Stage[Any]] = STAGES) -> Outcome:
    """Run one spec's build; a FactoryError ends it and is kept in the outcome, with the stages so far.
    `stages` is the table (tests run the loop over small fake stages)."""
    ctx = Context(spec=spec, options=options, sink=sink)
    runner = Runner(ctx, stages, table=stages)
    try:
        runner.run()
    except FactoryError as exc:
        runner.outcome.error = exc.message
        runner.outcome.exit_code = exc.exit_code
        runner.outcome.exception = exc
    outcome = runner.outcome
    _summarise(ctx, outcome)
    if ctx.build_dir is not None:
        status = "failed" if outcome.error else "ok"
        ctx.build.set("result", {"status": status, "error": outcome.error})
    return outcome


def _summarise(ctx: Context, outcome: Outcome) -> None:
    """The outcome's image hash, compliance line and published images, from the typed results."""
    from factory.stages.compliance import compliance

    if ctx.build_dir is None:
        return
    sealed = ctx.results.get(SealStage.name)
    if sealed is None and ctx.build.stage_ok(SealStage.name) and ctx.options.verify:
        sealed = ctx.result(SealStage)
    if sealed is not None:
        outcome.image_sha256 = sealed.sealed_sha256
    elif not ctx.options.verify and ctx.build.disk.is_file():
        outcome.image_sha256 = digest.sha256_file(ctx.build.disk)
    if ctx.spec.compliance is not None:
        outcome.compliance = compliance.recorded_line(ctx.build)
    promoted = ctx.results.get(PromoteStage.name)
    if isinstance(promoted, PromoteResult):
        outcome.published = dict(promoted.targets)
        aws = promoted.targets.get("aws")
        if aws is not None:
            outcome.amis = aws.stats.get("amis", {})


def jsonable_outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "spec": outcome.spec,
        "build_dir": str(outcome.build_dir) if outcome.build_dir else None,
        "stages": outcome.stages,
        "image_sha256": outcome.image_sha256,
        "amis": outcome.amis,
        "targets": to_jsonable(outcome.published),
        "compliance": outcome.compliance,
        "error": outcome.error,
        "exit_code": outcome.exit_code,
    }
