"""`factory verify SPEC [--image PATH] [--build BUILD_DIR]`: boot an image and run its acceptance suite.

The result goes into the build record (stage "verify"), bound to the image's sha256: that is what the
promotion gate reads. Exit 0 when every check passed, 6 when the image did not boot or a check failed.
`--compliance-only` re-runs just the OpenSCAP scan of the build's sealed image (stage "compliance"):
exit 6 when a failing rule is not waived.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from factory.core import paths
from factory.core.record import BuildDir
from factory.errors import UsageError, VerifyError
from factory.pipeline import run_stage_objects
from factory.spec import Spec, load_spec
from factory.stages.base import Context, Options, recorded
from factory.stages.verify import checks

out = Console(highlight=False, soft_wrap=True)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="boot an image on a throw-away overlay and run its acceptance tests (tests/images)",
        description="Boot the image headless, log in with the build's SSH key and run tests/images with "
        "testinfra. With no --build, the newest build of the spec under the build root.",
    )
    p.add_argument("spec", nargs="?", type=Path, metavar="SPEC", help="the image's spec (specs/*.yaml)")
    p.add_argument("--image", type=Path, help="the disk to verify (default: BUILD_DIR/disk.qcow2)")
    p.add_argument("--build", type=Path, metavar="BUILD_DIR", help="the build whose key logs in")
    p.add_argument("--list", action="store_true", help="list the acceptance checks (names for expect.skip)")
    p.add_argument(
        "--compliance-only",
        action="store_true",
        help="re-run only the compliance scan (spec's compliance section) of the build's sealed image",
    )
    p.set_defaults(func=run)


def newest_build(root: Path, spec_name: str) -> Path:
    builds = sorted(p for p in (root / spec_name).glob("*") if BuildDir.is_build(p))
    if not builds:
        raise UsageError(f"no build of {spec_name} under {root}: give --build BUILD_DIR")
    return builds[-1]


def _context(spec: Spec, build: BuildDir, **options: Any) -> Context:
    return Context(spec=spec, options=Options(**options), build_dir=build)


def run_verify(spec: Spec, build: BuildDir, image: Path) -> int:
    from factory.stages.verify.stage import ReverifyStage, VerifyStage
    from factory.stages.verify.verify import VerifyResult

    ctx = _context(spec, build, image=image)
    # No build key (the image was sealed, or not installed by this build): `reverify` logs in with a
    # throw-away key added to the throw-away overlay only, and is recorded apart from the verify the
    # promotion gate reads. Either way the same runner as the build (recorded, keyed, a failure recorded
    # with its counts); this boot only checks, it does not generalise.
    stage = VerifyStage(generalise=False) if build.key.is_file() else ReverifyStage()
    if isinstance(stage, ReverifyStage):
        out.print(f"{build.path}: no build key; logging in with a throw-away key added to the overlay")
    run_stage_objects(ctx, [stage])
    result: VerifyResult = ctx.results[stage.name]
    s = result.summary
    out.print(
        f"{spec.name}: {s.passed} passed, {s.failed} failed, {s.skipped} skipped, {s.errors} errors "
        f"(SSH after {result.ssh_ready_s:.1f} s, suite {result.suite_s:.1f} s); report: {result.junit}"
    )
    return 0


def run_compliance(spec: Spec, build: BuildDir) -> int:
    from factory.core import digest
    from factory.stages.compliance.compliance import ComplianceResult
    from factory.stages.compliance.stage import ComplianceStage
    from factory.stages.seal.stage import SealStage

    if spec.compliance is None:
        raise UsageError(f"{spec.source}: --compliance-only: the spec has no compliance section")
    seal = recorded(build, SealStage)
    if seal is None or not seal.sealed_image.is_file():
        raise UsageError(f"{build.path}: no sealed image to scan (the build has not been sealed)")
    sealed = seal.sealed_image
    sealed_sha256 = digest.sha256_file(sealed)
    if sealed_sha256 != seal.sealed_sha256:
        raise VerifyError(f"{sealed}: not the sealed image the build recorded; refusing to scan it")
    ctx = _context(spec, build)
    run_stage_objects(ctx, [ComplianceStage(image=sealed, image_sha256=sealed_sha256)])
    result: ComplianceResult = ctx.results["compliance"]
    out.print(
        f"{spec.name}: compliance {result.line()} (image {sealed_sha256[:16]}); report: {result.report}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        for check in checks.CHECKS:
            out.print(f"{check.name:24} {check.description}")
        return 0
    if args.spec is None:
        raise UsageError("factory verify: give a SPEC (or --list)")
    spec = load_spec(args.spec)
    checks.require_known_skips(spec)
    if args.image is not None and not args.image.is_file():
        raise UsageError(f"{args.image}: no such image")
    # The build directory holds the key the image accepts (added by its install): no build, no login.
    build_path = args.build or newest_build(paths.build_root(), spec.name)
    build = BuildDir.open(build_path)
    if args.compliance_only:
        if args.image is not None:
            raise UsageError("--compliance-only scans the build's sealed image: drop --image")
        return run_compliance(spec, build)
    image = args.image or build.disk
    if not image.is_file():
        raise UsageError(f"{image}: no such image (give --image PATH)")
    return run_verify(spec, build, image)
