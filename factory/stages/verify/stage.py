"""Stage `verify`: the installed disk booted on a throw-away overlay, the acceptance suite run over SSH
(tests/images with testinfra); a passing boot is generalised for the seal stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from factory.core.events import Skip
from factory.errors import FactoryError, VerifyError
from factory.stages.base import BaseStage, Context
from factory.stages.verify import access
from factory.stages.verify.verify import VerifyResult
from factory.vm import sshkey


def build_key(ctx: Context) -> sshkey.BuildKey:
    """The key the install added to the image; sealing deletes it, by design."""
    if not ctx.build.key.is_file():
        raise VerifyError(
            f"{ctx.build.path}: the build key is gone (removed when the image was sealed); "
            "re-run with --from install to verify again"
        )
    return sshkey.load(ctx.build.key)


@dataclass
class VerifyStage(BaseStage):
    # The build generalises a passing boot for sealing; `factory verify` only checks.
    generalise: bool = True

    name: ClassVar[str] = "verify"
    error: ClassVar[type[FactoryError]] = VerifyError
    result_type = VerifyResult

    def skip(self, ctx: Context) -> Skip | None:
        return None if ctx.options.verify else Skip.NOT_REQUESTED

    def run(self, ctx: Context) -> VerifyResult:
        from factory.stages.verify import verify

        image = ctx.options.image or ctx.build.disk
        return verify.verify(ctx.spec, image, ctx.build, key=build_key(ctx), generalise_boot=self.generalise)

    def judge(self, ctx: Context, result: VerifyResult) -> FactoryError | None:
        if result.passed:
            return None
        s = result.summary
        return VerifyError(
            f"{ctx.spec.name}: the image failed its acceptance tests ({s.failed} failed, {s.errors} errors); "
            f"see {result.junit}",
            artifacts=(result.junit, result.junit.with_name("pytest.log"), result.transcript),
        )


@dataclass
class ReverifyStage(VerifyStage):
    """`factory verify` of an image the build key no longer opens (sealed, exported, older): a throw-away
    key goes into the overlay only (`access`). Recorded as `reverify`, so the `verify` record the promotion
    gate reads, bound to the installed disk, is left as it was."""

    generalise: bool = False

    name: ClassVar[str] = access.REVERIFY_STAGE

    def run(self, ctx: Context) -> VerifyResult:
        from factory.stages.verify import verify

        image = ctx.options.image or ctx.build.disk
        with access.login(ctx.build, ctx.spec.vm.accel) as login:
            return verify.verify(ctx.spec, image, ctx.build, key=login.key, prepare_disk=login.prepare_disk)
