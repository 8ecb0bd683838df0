"""Publish one build to the targets its spec names: the artifact each target needs, the gate, then publish.

Targets are independent: one failing does not stop the others (a vSphere outage should not hold back the
Glance image); the failures are raised together at the end, each target's own error when only one failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from factory import targets
from factory.errors import FactoryError, PublishError, UsageError
from factory.stages.promote.gate import require_verified
from factory.targets.base import Artifact, Published, Target, TargetContext, exported, gated_publish


def artifact_for(target: Target, ctx: TargetContext) -> Artifact:
    """The exported artifact a target publishes; missing means the spec's `export` lacks its format."""
    fmt = target.artifact_format(ctx.spec)
    for art in exported(ctx.build):
        if art.format == fmt:
            return art
    raise UsageError(
        f"{ctx.spec.source}: target {target.key} publishes the {fmt} export, which build "
        f"{ctx.build.build_id} does not have: add {fmt} to the spec's `export`"
    )


def select(ctx: TargetContext, only: Sequence[str] = ()) -> list[Target]:
    """The targets to publish to: every one the spec names, or just `only` (each must be in the spec)."""
    named = targets.configured(ctx.spec)
    for key in only:
        targets.get(key)  # an unknown key is a usage error naming the known ones
        if key not in named:
            raise UsageError(
                f"{ctx.spec.source}: --only-target {key}: the spec has no {key} section "
                f"(it names: {', '.join(named) or 'no targets'})"
            )
    return [targets.get(k) for k in (only or named)]


def publish(
    ctx: TargetContext, chosen: Sequence[Target], instances: dict[str, Target] | None = None
) -> dict[str, Published]:
    """Publish to every chosen target (gate first, each); `instances` overrides a key's target (tests)."""
    plan = [((instances or {}).get(t.key, t), artifact_for(t, ctx)) for t in chosen]
    # Every artifact through the gate before anything is published anywhere: an unverified build
    # reaches no target, and a missing export is found before the first upload.
    for _, artifact in plan:
        require_verified(ctx.build, artifact.sha256)
    done: dict[str, Published] = {}
    failed: list[tuple[str, FactoryError]] = []
    for target, artifact in plan:
        try:
            done[target.key] = gated_publish(target, ctx, artifact)
        except FactoryError as exc:
            failed.append((target.key, exc))
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        raise PublishError(
            f"{len(failed)} targets failed: " + "; ".join(f"{key}: {exc.message}" for key, exc in failed)
        )
    return done
