"""promotion.json: what a promotion made, in which account and region, and in what state.

Written atomically after every step, so an interrupted or failed run leaves a true list of what exists;
a re-run reads it back to finish the job, and `factory promote --cleanup` reads it to remove leftovers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.core.manifest import JsonManifest

NAME = "promotion.json"


class Manifest(JsonManifest):
    """The promotion manifest of one build; every setter saves at once."""

    what = "promotion manifest"

    @classmethod
    def load(cls, build_path: Path, *, build_id: str, spec: str, image_sha256: str) -> Manifest:
        path = build_path / NAME
        fresh = {"build_id": build_id, "spec": spec, "image_sha256": image_sha256, "state": "new"}
        data = cls.read(path, fresh)
        data.setdefault("source", {})
        data.setdefault("copies", {})
        data.setdefault("retired", [])
        return cls(path, data)

    @property
    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = self.data["source"]
        return source

    def update_source(self, **fields: Any) -> None:
        self.source.update(fields)
        self.save()

    def copy(self, profile: str, region: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.data["copies"].setdefault(profile, {}).setdefault(region, {})
        return entry

    def update_copy(self, profile: str, region: str, **fields: Any) -> None:
        self.copy(profile, region).update(fields)
        self.save()

    def add_retired(self, profile: str, region: str, ami_id: str, snapshot_ids: list[str], why: str) -> None:
        self.data["retired"].append(
            {"profile": profile, "region": region, "ami_id": ami_id, "snapshot_ids": snapshot_ids, "why": why}
        )
        self.save()

    def amis(self) -> dict[str, dict[str, str]]:
        """profile -> region -> AMI id of every encrypted copy recorded so far."""
        return {
            profile: {region: c["ami_id"] for region, c in regions.items() if c.get("ami_id")}
            for profile, regions in self.data["copies"].items()
        }
