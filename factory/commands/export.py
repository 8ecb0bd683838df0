"""`factory export BUILD_DIR --spec SPEC`: convert a build's sealed image to the spec's formats again.

The artifacts are recorded as the build's export stage, so the promotion gate can follow them back to the
sealed (and verified) image. Exit status: 0 exported, 2 bad build dir or spec, 3 qemu-img, 7 export failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import EXIT_OK, InputError
from factory.spec import load_spec
from factory.stages.compliance import compliance
from factory.stages.export import export
from factory.stages.verify import inventory


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
    seal = build.stage("seal") or {}
    result = seal.get("result") or {}
    if seal.get("status") != "ok" or "sealed_image" not in result or "sealed_sha256" not in result:
        raise InputError(f"{build.path}: no sealed image (seal stage: {seal.get('status', 'not run')})")
    image = Path(result["sealed_image"])
    if not image.is_absolute():
        image = build.path / image
    out_dir = args.out or build.path / "export"
    with build.stage_run("export", inputs=digest.combine(result["sealed_sha256"], spec.digest())) as holder:
        media = (build.stage("media") or {}).get("result") or {}
        exported = export.export(
            spec,
            image,
            result["sealed_sha256"],
            out_dir,
            build_id=build.build_id,
            labels=compliance.labels(spec, build),
            iso=Path(media["iso"]) if media.get("iso") else None,
            inventory=inventory.recorded(build.path),
        )
        holder["result"] = exported
    console = Console(highlight=False, soft_wrap=True)
    for art in exported.artifacts:
        console.print(f"{art.format:<6} {art.path}  {art.size} bytes  sha256 {art.sha256}", markup=False)
    if exported.sbom is not None:
        console.print(f"sbom   {exported.sbom}", markup=False)
    console.print(f"manifest: {exported.manifest}", markup=False)
    return EXIT_OK
