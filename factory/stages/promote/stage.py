"""Stage `promote` (with --promote): the verified, sealed, exported image published to every target the
spec names (AWS, vSphere, OpenStack, a registry...), each behind the same gate (gate.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from factory.core.events import Skip
from factory.core.record import from_jsonable
from factory.errors import FactoryError, PublishError, UsageError
from factory.stages.base import BaseStage, Context
from factory.targets.base import Published, TargetContext, TargetEvent


@dataclass(frozen=True)
class PromoteResult:
    # target key -> what it published; a run limited by --only-target keeps the other targets' entries.
    targets: dict[str, Published] = field(default_factory=dict)


class PromoteStage(BaseStage):
    name: ClassVar[str] = "promote"
    error: ClassVar[type[FactoryError]] = PublishError
    # A re-run with --promote publishes again: each target resumes from its manifest and retires what the
    # spec's keep rule says, as `factory promote` does.
    always_run: ClassVar[bool] = True
    result_type = PromoteResult

    def skip(self, ctx: Context) -> Skip | None:
        return None if ctx.options.promote else Skip.NOT_REQUESTED

    def run(self, ctx: Context) -> PromoteResult:
        from factory.targets import runner

        def event(ev: TargetEvent) -> None:
            ctx.progress(f"{ev.target} {ev.step} {ev.detail}", ev.done or None, ev.total or None)

        tctx = TargetContext(spec=ctx.spec, build=ctx.build, events=event)
        chosen = runner.select(tctx, ctx.options.only_targets)
        if not chosen:
            raise UsageError(
                f"{ctx.spec.source}: the spec names no target to publish to (aws, vsphere, openstack...)"
            )
        before: dict[str, Published] = {}
        if ctx.options.only_targets:
            # --only-target runs add to what earlier runs published to the other targets.
            recorded = ((ctx.build.stage(self.name) or {}).get("result") or {}).get("targets") or {}
            before = {k: from_jsonable(Published, v) for k, v in recorded.items()}
        published = runner.publish(tctx, chosen)
        return PromoteResult(targets={**before, **published})
