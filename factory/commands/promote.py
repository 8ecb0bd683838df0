"""`factory promote BUILD_DIR [--spec SPEC] [--cleanup]`: promote a build's exported raw image to AWS.

Re-running it on the same build finishes an interrupted promotion; `--cleanup` removes a failed build's
AMIs and snapshots everywhere (never one an SSM parameter points to).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from factory import buildlog
from factory.errors import UsageError
from factory.record import BuildDir
from factory.spec import Spec, load_spec

out = Console(highlight=False)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "promote",
        help="upload a verified build to AWS: encrypted AMIs in every account and region",
        description="Promote BUILD_DIR's exported raw image (re-run to resume; --cleanup removes leftovers).",
    )
    p.add_argument("build_dir", type=Path, metavar="BUILD_DIR", help="build/<spec>/<build-id>")
    p.add_argument("--spec", type=Path, default=None, help="spec file (default: specs/<spec>.yaml)")
    p.add_argument("--cleanup", action="store_true", help="remove this build's AMIs and snapshots instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _spec(args: argparse.Namespace, build: BuildDir) -> Spec:
    path: Path = args.spec or Path("specs") / f"{build.spec_name}.yaml"
    spec = load_spec(path)
    if spec.name != build.spec_name:
        raise UsageError(f"{path}: spec {spec.name!r} does not match the build's spec {build.spec_name!r}")
    return spec


def raw_artifact(build: BuildDir) -> tuple[Path, str]:
    """The raw image the export stage recorded (path, sha256)."""
    export = build.stage("export") or {}
    for art in (export.get("result") or {}).get("artifacts", []):
        if art.get("format") == "raw":
            return Path(art["path"]), str(art["sha256"])
    raise UsageError(f"{build.path}: the build has no raw export to promote (add raw to the spec's `export`)")


def run(args: argparse.Namespace) -> int:
    build = BuildDir.open(args.build_dir)
    spec = _spec(args, build)
    with buildlog.capture(build.path):
        summary = _promote_or_cleanup(args, spec, build)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        out.print_json(json.dumps(summary))
    return 0


def _promote_or_cleanup(args: argparse.Namespace, spec: Spec, build: BuildDir) -> dict[str, Any]:
    from factory.aws import promote

    if args.cleanup:
        cres = promote.cleanup(spec, build)
        summary: dict[str, Any] = {
            "removed_amis": list(cres.removed_amis),
            "removed_snapshots": list(cres.removed_snapshots),
            "kept_in_use": list(cres.kept),
            "manifest": str(cres.manifest),
        }
    else:
        raw, sha = raw_artifact(build)
        with build.stage_run("promote") as holder:
            pres = promote.promote(
                spec, build, raw, sha, progress=lambda e: out.print(f"[dim]{e.step}:[/] {e.detail}")
            )
            holder["result"] = pres
        summary = {
            "amis": pres.amis,
            "ssm": pres.ssm,
            "retired": list(pres.retired),
            "manifest": str(pres.manifest),
        }
    return summary
