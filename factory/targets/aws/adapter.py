"""The AWS promotion (promote.py) reached through base.Target, without moving its code.

promote.promote() already checks the gate, resumes from promotion.json and retires beyond `aws.keep`;
this adapter maps its result to Published and reads its manifest back for status().
"""

from __future__ import annotations

import json
from typing import ClassVar

from factory.errors import AwsError
from factory.spec import Spec
from factory.targets.aws import promote
from factory.targets.aws.manifest import NAME as MANIFEST_NAME
from factory.targets.aws.session import AwsSettings
from factory.targets.base import (
    Artifact,
    Published,
    PublishedImage,
    Retired,
    Status,
    TargetContext,
)


class AwsTarget:
    key: ClassVar[str] = "aws"
    label: ClassVar[str] = "AWS AMIs"

    def __init__(self, settings: AwsSettings | None = None, tuning: promote.Tuning | None = None) -> None:
        self.settings = settings
        self.tuning = tuning or promote.Tuning()

    def configured(self, spec: Spec) -> bool:
        return spec.aws is not None

    def artifact_format(self, spec: Spec) -> str:
        return "raw"

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published:
        if artifact.format != "raw":
            raise AwsError(f"AWS publishes the raw export, not {artifact.format}")
        res = promote.promote(
            ctx.spec,
            ctx.build,
            artifact.path,
            artifact.sha256,
            progress=lambda e: ctx.emit(self.key, e.step, e.detail, e.done, e.total),
            settings=self.settings,
            tuning=self.tuning,
        )
        images = tuple(
            PublishedImage(
                location=f"{profile}/{region}",
                id=ami,
                name=ami,
                extra={"ssm": res.ssm.get(profile, {}).get(region, "")},
            )
            for profile, regions in res.amis.items()
            for region, ami in regions.items()
        )
        return Published(
            target=self.key,
            images=images,
            retired=Retired(target=self.key, removed=res.retired),
            manifest=res.manifest,
            stats={
                "amis": res.amis,
                "ssm": res.ssm,
                "source_ami": res.source_ami,
                "launch_test": res.launch_test,
            },
        )

    def status(self, ctx: TargetContext) -> Status:
        path = ctx.build.path / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return Status(target=self.key, state="new", images=())
        except (OSError, json.JSONDecodeError) as exc:
            raise AwsError(f"{path}: unreadable promotion manifest: {exc}") from None
        images = tuple(
            PublishedImage(location=f"{p}/{r}", id=c["ami_id"], name=c["ami_id"], state=c.get("state", ""))
            for p, regions in data.get("copies", {}).items()
            for r, c in regions.items()
            if c.get("ami_id")
        )
        return Status(target=self.key, state=str(data.get("state", "new")), images=images)

    def retire(self, ctx: TargetContext, keep: int) -> Retired:
        # The AWS promotion retires beyond `aws.keep` as its last step (after every copy is available);
        # a separate retire is what that step did, read back from its manifest.
        path = ctx.build.path / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return Retired(target=self.key)
        return Retired(target=self.key, removed=tuple(r["ami_id"] for r in data.get("retired", [])))
