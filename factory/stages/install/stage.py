"""Stage `install`: the kickstart served on 127.0.0.1, the installer driven over the serial console,
watched for failure markers, into the build's disk."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from factory.errors import FactoryError, InstallError
from factory.stages.base import BaseStage, Context
from factory.stages.install.install import InstallResult
from factory.stages.media.stage import MediaStage

# The kickstart's URL path is its access token: shown as "…" in logs and on screen.
_URL_PATH = re.compile(r"(https?://[^/\s]+/)\S+")


class InstallStage(BaseStage):
    name: ClassVar[str] = "install"
    error: ClassVar[type[FactoryError]] = InstallError
    result_type = InstallResult

    def inputs(self, ctx: Context) -> str:
        # The build directory was chosen by the build key (ISO, kickstart, spec, factory version).
        key: str = ctx.build.record.get("key", "")
        return key

    def run(self, ctx: Context) -> InstallResult:
        from factory.stages.install import install
        from factory.stages.validate.stage import kickstart_text

        return install.install(
            ctx.spec,
            ctx.result(MediaStage),
            ctx.build,
            keep_on_error=ctx.options.keep_on_error,
            progress=lambda event: show(ctx, event),
            kickstart=kickstart_text(ctx),
        )


def show(ctx: Context, event: Any) -> None:
    """The installer's monitor events as progress: packages as a bar, stage lines as steps."""
    from factory.stages.install.monitor import ProgressEvent, StageEvent

    if isinstance(event, ProgressEvent):
        ctx.progress(f"installing {event.package}", event.done, event.total)
    elif isinstance(event, StageEvent):
        ctx.progress(_URL_PATH.sub(r"\1…", event.text))
