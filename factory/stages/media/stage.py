"""Stage `media`: the install ISO, downloaded or built (testbed), checksummed and cached."""

from __future__ import annotations

from typing import ClassVar

from factory.errors import FactoryError, MediaError
from factory.stages.base import BaseStage, Context
from factory.stages.media.media import MediaResult


class MediaStage(BaseStage):
    name: ClassVar[str] = "media"
    error: ClassVar[type[FactoryError]] = MediaError
    needs_build: ClassVar[bool] = False
    result_type = MediaResult

    def run(self, ctx: Context) -> MediaResult:
        from factory.stages.media import media

        prepared = media.prepare(ctx.spec, progress=lambda done, total: ctx.progress("download", done, total))
        return media.for_boot(ctx.spec, prepared)
