"""Whole stage results for tests that write a build record by hand (the gate reads typed results, so a
hand-made record must have every field a real stage records)."""

from __future__ import annotations

from pathlib import Path

from factory.stages.export.export import Artifact, ExportResult
from factory.stages.seal.seal import SealResult
from factory.stages.verify.verify import Summary, VerifyResult


def verified(image_sha256: str, passed: bool = True, folder: Path = Path("/build/verify")) -> VerifyResult:
    return VerifyResult(
        passed=passed,
        image_sha256=image_sha256,
        junit=folder / "junit.xml",
        summary=Summary(passed=18 if passed else 17, failed=0 if passed else 1, skipped=0, errors=0),
        ssh_ready_s=20.0,
        suite_s=12.0,
        transcript=folder / "console.log",
    )


def sealed(source_sha256: str, sealed_sha256: str, image: Path, recheck: bool = True) -> SealResult:
    return SealResult(
        sealed_image=image,
        source_sha256=source_sha256,
        sealed_sha256=sealed_sha256,
        recheck_passed=recheck,
        removed=("/root/.ssh/authorized_keys",),
    )


def exported(*artifacts: Artifact, manifest: Path = Path("/build/export/manifest.json")) -> ExportResult:
    return ExportResult(artifacts=artifacts, manifest=manifest)


def artifact(fmt: str, path: Path, sha256: str, source_sha256: str, size: int = 0) -> Artifact:
    return Artifact(format=fmt, path=path, sha256=sha256, size=size, source_sha256=source_sha256)
