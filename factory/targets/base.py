"""The one interface every publishing target has (AWS, vSphere, OpenStack, and the ones after them).

    gate (verified -> sealed -> exported, by sha256) -> target.publish(ctx, artifact) -> Published
    target.status(ctx) -> Status           what exists for this build, read back from the platform
    target.retire(ctx, keep) -> Retired    older images of the spec beyond `keep`, never a "latest" one

A target is named by its key in the spec (`aws:`, `vsphere:`, `openstack:` ...) and finds its own section
there. It keeps its own manifest under the build directory (`targets/<key>.json`, see TargetManifest),
written after every step, so a re-run after a kill resumes (finishes or cleans up) instead of duplicating.
Targets never import each other; the pipeline and `factory promote` reach them only through `registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from factory.core.manifest import JsonManifest
from factory.core.record import BuildDir
from factory.spec import Spec
from factory.stages.compliance import compliance

# What a target publishes: an exported file as the export stage recorded it (the gate follows
# sha256 -> source_sha256).
from factory.stages.export.export import Artifact
from factory.stages.promote.gate import require_verified

__all__ = [
    "Artifact",
    "Published",
    "PublishedImage",
    "Retired",
    "Status",
    "Target",
    "TargetContext",
    "TargetEvent",
    "TargetManifest",
    "exported",
    "gated_publish",
]


@dataclasses.dataclass(frozen=True)
class TargetEvent:
    """One progress report of a target: `step` is a stable name (upload, import, tag, retire...)."""

    target: str
    step: str
    detail: str
    done: int = 0
    total: int = 0


EventSink = Callable[[TargetEvent], None]


def _no_events(event: TargetEvent) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class TargetContext:
    """What a target may use: the spec, the build (record + directory) and one event sink."""

    spec: Spec
    build: BuildDir
    events: EventSink = _no_events

    def manifest_path(self, key: str) -> Path:
        return self.build.targets_dir / f"{key}.json"

    def emit(self, target: str, step: str, detail: str, done: int = 0, total: int = 0) -> None:
        self.events(TargetEvent(target, step, detail, done, total))

    @property
    def created_date(self) -> str:
        """The build's creation date as YYYYMMDD (names of published images carry it)."""
        created = str(self.build.record.get("created", ""))[:10].replace("-", "")
        return created or self.build.build_id[:8]


@dataclasses.dataclass(frozen=True)
class PublishedImage:
    """One image as a platform holds it: `location` says where (account/region, datacenter/folder, cloud)."""

    location: str
    id: str
    name: str
    state: str = "available"
    extra: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Retired:
    target: str
    # ids removed from the platform, ids only hidden (to be removed by a later run), ids kept on purpose
    removed: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Published:
    target: str
    images: tuple[PublishedImage, ...]
    retired: Retired
    manifest: Path
    # Figures worth showing (bytes sent, seconds...), target-specific, plain values.
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Status:
    target: str
    state: str  # the manifest's state: new, running, complete, failed
    images: tuple[PublishedImage, ...]


@runtime_checkable
class Target(Protocol):
    """A place images are published to. `key` is its spec section; `label` is for tables."""

    key: ClassVar[str]
    label: ClassVar[str]

    def configured(self, spec: Spec) -> bool:
        """Whether the spec names this target (has its section)."""
        ...

    def artifact_format(self, spec: Spec) -> str:
        """The export format this target publishes (raw, qcow2, ova...): the spec must export it."""
        ...

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published: ...

    def status(self, ctx: TargetContext) -> Status: ...

    def retire(self, ctx: TargetContext, keep: int) -> Retired: ...


def exported(build: BuildDir) -> tuple[Artifact, ...]:
    """The artifacts of the build's finished export stage (none unless it finished)."""
    from factory.stages.base import recorded
    from factory.stages.export.stage import ExportStage

    export = recorded(build, ExportStage)
    return export.artifacts if export is not None else ()


def gated_publish(target: Target, ctx: TargetContext, artifact: Artifact) -> Published:
    """The one way any target publishes: the promotion gate first, the same for every target."""
    require_verified(ctx.build, artifact.sha256)
    # The compliance half of the gate (a spec with a compliance section: a passing scan of the sealed image).
    # Targets attach the same dict to what they publish (AWS: AMI tags; see compliance.publish_metadata).
    compliance.publish_metadata(ctx.spec, ctx.build)
    return target.publish(ctx, artifact)


class TargetManifest(JsonManifest):
    """A target's own manifest (build/<spec>/<id>/targets/<key>.json); every change is saved at once."""

    what = "target manifest"

    @classmethod
    def load(cls, ctx: TargetContext, key: str, *, image_sha256: str = "") -> TargetManifest:
        path = ctx.manifest_path(key)
        fresh = {
            "target": key,
            "build_id": ctx.build.build_id,
            "spec": ctx.spec.name,
            "image_sha256": image_sha256,
            "state": "new",
        }
        data = cls.read(path, fresh)
        data.setdefault("places", {})
        data.setdefault("retired", [])
        if image_sha256:
            data["image_sha256"] = image_sha256
        return cls(path, data)

    def place(self, name: str) -> dict[str, Any]:
        """The entry of one place (a datacenter, a cloud...), created empty."""
        entry: dict[str, Any] = self.data["places"].setdefault(name, {})
        return entry

    def update_place(self, name: str, **fields: Any) -> None:
        self.place(name).update(fields)
        self.save()

    def add_retired(self, place: str, image_id: str, how: str, why: str) -> None:
        self.data["retired"].append({"place": place, "id": image_id, "how": how, "why": why})
        self.save()
