"""`factory export BUILD_DIR --spec SPEC`: convert a build's sealed image to the spec's formats again.

The artifacts are recorded as the build's export stage, so the promotion gate can follow them back to the
sealed (and verified) image. Exit status: 0 exported, 2 bad build dir or spec, 3 qemu-img, 7 export failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from factory.core.record import BuildDir
from factory.errors import EXIT_OK, InputError
from factory.pipeline import run_stages
from factory.spec import load_spec
from factory.stages.base import Context, Options, recorded
from factory.stages.export.export import ExportResult
from factory.stages.seal.stage import SealStage


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="convert a build's sealed image to raw/qcow2/vmdk/vhd",
        description="Convert the sealed image of BUILD_DIR to every format in the spec's `export` list, "
        "with sha256 files and manifest.json, and record them in the build record.",
    )
    p.add_argument("build_dir", type=Path, metavar="BUILD_DIR", help="build/<spec>/<build-id>")
    p.add_argument("--spec", type=Path, required=True, help="the spec the build was made from")
    p.add_argument("--out", type=Path, help="output folder (default: BUILD_DIR/export)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    build = BuildDir.open(args.build_dir)
    spec = load_spec(args.spec)
    if spec.name != build.spec_name:
        raise InputError(
            f"{args.spec}: spec {spec.name!r} does not match build {build.path} ({build.spec_name!r})"
        )
    if recorded(build, SealStage) is None:
        seal = build.stage("seal") or {}
        raise InputError(f"{build.path}: no sealed image (seal stage: {seal.get('status', 'not run')})")
    ctx = Context(spec=spec, options=Options(export_dir=args.out), build_dir=build)
    run_stages(ctx, ["export"])
    exported: ExportResult = ctx.results["export"]
    console = Console(highlight=False, soft_wrap=True)
    for art in exported.artifacts:
        console.print(f"{art.format:<6} {art.path}  {art.size} bytes  sha256 {art.sha256}", markup=False)
    if exported.sbom is not None:
        console.print(f"sbom   {exported.sbom}", markup=False)
    console.print(f"manifest: {exported.manifest}", markup=False)
    return EXIT_OK
