"""Stage `seal`: the verified image generalised (build key, host keys, machine-id, logs...), re-checked
offline, as BUILD/sealed.qcow2; the build key is deleted."""

from __future__ import annotations

from typing import ClassVar

from factory.core.events import Skip
from factory.errors import FactoryError, SealError
from factory.stages.base import BaseStage, Context
from factory.stages.seal.seal import SealResult


class SealStage(BaseStage):
    name: ClassVar[str] = "seal"
    error: ClassVar[type[FactoryError]] = SealError
    result_type = SealResult

    def skip(self, ctx: Context) -> Skip | None:
        # Only a verified image is sealed.
        return None if ctx.options.verify else Skip.NOT_REQUESTED

    def run(self, ctx: Context) -> SealResult:
        from factory.stages.seal import seal
        from factory.stages.verify.stage import build_key

        try:
            key = build_key(ctx)
        except FactoryError as exc:
            raise SealError(exc.message) from None
        return seal.seal(ctx.spec, ctx.build.disk, ctx.build, key=key)
