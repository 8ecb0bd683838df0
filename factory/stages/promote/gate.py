"""The promotion gate: an image may leave the factory only with a passing verification of that exact hash.

The chain, all read from the build record:
  verify.result  = {"passed": true, "image_sha256": <installed disk>, ...}
  seal.result    = {"source_sha256": <installed>, "sealed_sha256": <sealed>, "recheck_passed": true, ...}
  export.result  = {"artifacts": [{"format", "path", "sha256", "source_sha256": <sealed disk>}, ...]}
An artifact passes the gate when its hash is listed in export with a source that seal produced from a disk
that verify passed, and the sealed disk passed its own re-check.
"""

from __future__ import annotations

from typing import Any

from factory.core.record import BuildDir
from factory.errors import VerifyError


def _result(build: BuildDir, stage: str) -> dict[str, Any]:
    st = build.stage(stage) or {}
    if st.get("status") != "ok":
        raise VerifyError(
            f"build {build.build_id}: stage {stage} has not passed (status: {st.get('status', 'not run')}); "
            "refusing to promote an unverified image"
        )
    result: dict[str, Any] = st.get("result") or {}
    return result


def require_verified(build: BuildDir, image_sha256: str) -> None:
    """Raise VerifyError unless `image_sha256` is a verified, sealed (and possibly exported) image."""
    verify = _result(build, "verify")
    if not verify.get("passed") or not verify.get("image_sha256"):
        raise VerifyError(f"build {build.build_id}: verification did not pass; refusing to promote")
    seal = _result(build, "seal")
    if seal.get("source_sha256") != verify["image_sha256"] or not seal.get("recheck_passed"):
        raise VerifyError(
            f"build {build.build_id}: the sealed image was not made from the verified image or failed its "
            "re-check; refusing to promote"
        )
    sealed = seal.get("sealed_sha256")
    if image_sha256 == sealed:
        return
    export = build.stage("export") or {}
    # Only a finished export counts: a failed or interrupted one may list artifacts that are half written.
    artifacts = (export.get("result") or {}).get("artifacts", []) if export.get("status") == "ok" else []
    for art in artifacts:
        if art.get("sha256") == image_sha256 and art.get("source_sha256") == sealed:
            return
    raise VerifyError(
        f"image sha256 {image_sha256[:12]}… has no passing verification in build {build.build_id}; "
        "refusing to promote (re-run `factory verify` or promote the image the build exported)"
    )
