"""The promotion gate: an image may leave the factory only with a passing verification of that exact hash.

The chain, all read from the build record as the stages' typed results:
  VerifyResult   passed, image_sha256 = <installed disk>
  SealResult     source_sha256 = <installed>, sealed_sha256 = <sealed>, recheck_passed
  ExportResult   artifacts: format, path, sha256, source_sha256 = <sealed disk>
An artifact passes the gate when its hash is listed in export with a source that seal produced from a disk
that verify passed, and the sealed disk passed its own re-check.
"""

from __future__ import annotations

from typing import TypeVar

from factory.core.record import BuildDir
from factory.errors import VerifyError
from factory.stages.base import Stage, recorded

R = TypeVar("R")


def _result(build: BuildDir, stage: type[Stage[R]]) -> R:
    value = recorded(build, stage)
    if value is None:
        st = build.stage(stage.name) or {}
        raise VerifyError(
            f"build {build.build_id}: stage {stage.name} has not passed (status: "
            f"{st.get('status', 'not run')}); refusing to promote an unverified image"
        )
    return value


def require_verified(build: BuildDir, image_sha256: str) -> None:
    """Raise VerifyError unless `image_sha256` is a verified, sealed (and possibly exported) image."""
    from factory.stages.export.stage import ExportStage
    from factory.stages.seal.stage import SealStage
    from factory.stages.verify.stage import VerifyStage

    verify = _result(build, VerifyStage)
    if not verify.passed or not verify.image_sha256:
        raise VerifyError(f"build {build.build_id}: verification did not pass; refusing to promote")
    seal = _result(build, SealStage)
    if seal.source_sha256 != verify.image_sha256 or not seal.recheck_passed:
        raise VerifyError(
            f"build {build.build_id}: the sealed image was not made from the verified image or failed its "
            "re-check; refusing to promote"
        )
    if image_sha256 == seal.sealed_sha256:
        return
    # Only a finished export counts: a failed or interrupted one may list artifacts that are half written.
    export = recorded(build, ExportStage)
    for art in export.artifacts if export is not None else ():
        if art.sha256 == image_sha256 and art.source_sha256 == seal.sealed_sha256:
            return
    raise VerifyError(
        f"image sha256 {image_sha256[:12]}… has no passing verification in build {build.build_id}; "
        "refusing to promote (re-run `factory verify` or promote the image the build exported)"
    )
