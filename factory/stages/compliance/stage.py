"""Stage `compliance` (specs with a compliance section): the sealed image scanned offline with OpenSCAP;
passes only when every failing rule is waived with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from factory.core.events import Skip
from factory.errors import ComplianceError, FactoryError
from factory.stages.base import BaseStage, Context
from factory.stages.compliance.compliance import ComplianceResult
from factory.stages.seal.stage import SealStage


@dataclass
class ComplianceStage(BaseStage):
    # Another image than the build's sealed one (tests; the gate function).
    image: Path | None = None
    image_sha256: str | None = None

    name: ClassVar[str] = "compliance"
    error: ClassVar[type[FactoryError]] = ComplianceError
    result_type = ComplianceResult

    def skip(self, ctx: Context) -> Skip | None:
        if ctx.spec.compliance is None:
            return Skip.NOT_NEEDED
        return None if ctx.options.verify else Skip.NOT_REQUESTED

    def _image(self, ctx: Context) -> tuple[Path, str]:
        if self.image is not None and self.image_sha256 is not None:
            return self.image, self.image_sha256
        sealed = ctx.result(SealStage)
        return sealed.sealed_image, sealed.sealed_sha256

    def inputs(self, ctx: Context) -> str:
        from factory.stages.compliance import compliance

        # Another profile, waiver or datastream: the recorded verdict says nothing about this one.
        return compliance.stage_inputs(ctx.spec, self._image(ctx)[1])

    def run(self, ctx: Context) -> ComplianceResult:
        from factory.stages.compliance import compliance

        image, sha = self._image(ctx)
        return compliance.scan(ctx.spec, image, ctx.build.compliance_dir, image_sha256=sha)

    def judge(self, ctx: Context, result: ComplianceResult) -> FactoryError | None:
        from factory.stages.compliance import compliance

        if result.passed:
            return None
        return ComplianceError(
            compliance.failure_message(ctx.spec, result), artifacts=(result.report, result.junit)
        )
