"""Stage `export`: the sealed image in every format the spec lists (raw+bmap, qcow2, vmdk, vhd, ova, oci,
pxe), each checked, with sha256 files and a manifest."""

from __future__ import annotations

from typing import ClassVar

from factory.core import digest
from factory.core.events import Skip
from factory.errors import ExportError, FactoryError
from factory.stages.base import BaseStage, Context
from factory.stages.export.export import ExportResult
from factory.stages.media.stage import MediaStage
from factory.stages.seal.stage import SealStage


class ExportStage(BaseStage):
    name: ClassVar[str] = "export"
    error: ClassVar[type[FactoryError]] = ExportError
    result_type = ExportResult

    def skip(self, ctx: Context) -> Skip | None:
        # Only a sealed (so verified) image is exported.
        return None if ctx.options.verify else Skip.NOT_REQUESTED

    def inputs(self, ctx: Context) -> str:
        return digest.combine(ctx.result(SealStage).sealed_sha256, ctx.spec.digest())

    def run(self, ctx: Context) -> ExportResult:
        from factory.stages.compliance import compliance
        from factory.stages.export import export
        from factory.stages.verify import inventory

        sealed = ctx.result(SealStage)
        image = (
            sealed.sealed_image if sealed.sealed_image.is_absolute() else ctx.build.path / sealed.sealed_image
        )
        try:
            iso = ctx.result(MediaStage).iso
        except FactoryError:
            iso = None  # a build recorded without its media (the PXE tree needs it; it says so)
        return export.export(
            ctx.spec,
            image,
            sealed.sealed_sha256,
            ctx.options.export_dir or ctx.build.export_dir,
            build_id=ctx.build.build_id,
            labels=compliance.labels(ctx.spec, ctx.build),
            iso=iso,
            # The packages verify recorded, written as the SBOM (none for a build verified before that).
            inventory=inventory.recorded(ctx.build.path),
        )
