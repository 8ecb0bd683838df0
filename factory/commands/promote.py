"""`factory promote BUILD_DIR [--spec SPEC] [--only-target KEY] [--cleanup]`: publish a verified build.

Publishes to every target the spec names (AWS, vSphere, OpenStack...), or only the `--only-target` ones,
each behind the same gate. Re-running it on the same build finishes an interrupted promotion from each
target's manifest; `--cleanup` removes a failed build's AMIs and snapshots everywhere (AWS; never one an
SSM parameter points to).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from factory.core import buildlog
from factory.core.events import Event, StageProgress
from factory.core.record import BuildDir
from factory.errors import UsageError
from factory.pipeline import run_stages
from factory.spec import Spec, load_spec
from factory.stages.base import Context, Options
from factory.stages.promote.stage import PromoteResult

out = Console(highlight=False)
# Progress goes to stderr: stdout carries only the result (--json output stays parseable).
progress_out = Console(stderr=True, highlight=False, soft_wrap=True)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "promote",
        help="publish a verified build to the spec's targets (AWS, vSphere, OpenStack)",
        description="Publish BUILD_DIR's exports to its spec's targets (re-run to resume; "
        "--cleanup removes AWS leftovers).",
    )
    p.add_argument("build_dir", type=Path, metavar="BUILD_DIR", help="build/<spec>/<build-id>")
    p.add_argument("--spec", type=Path, default=None, help="spec file (default: specs/<spec>.yaml)")
    p.add_argument(
        "--only-target",
        action="append",
        default=[],
        metavar="KEY",
        help="publish only to this target (aws, vsphere, openstack...); repeatable",
    )
    p.add_argument("--cleanup", action="store_true", help="remove this build's AMIs and snapshots instead")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _spec(args: argparse.Namespace, build: BuildDir) -> Spec:
    path: Path = args.spec or Path("specs") / f"{build.spec_name}.yaml"
    spec = load_spec(path)
    if spec.name != build.spec_name:
        raise UsageError(f"{path}: spec {spec.name!r} does not match the build's spec {build.spec_name!r}")
    return spec


def _show(event: Event) -> None:
    # Byte counts come many times a second: only the start and the end of a counted step are shown.
    if not isinstance(event, StageProgress) or (event.total and 0 < (event.done or 0) < event.total):
        return
    progress_out.print(event.detail, markup=False)


def run(args: argparse.Namespace) -> int:
    build = BuildDir.open(args.build_dir)
    spec = _spec(args, build)
    summary = _promote_or_cleanup(args, spec, build)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        out.print_json(json.dumps(summary))
    return 0


def _promote_or_cleanup(args: argparse.Namespace, spec: Spec, build: BuildDir) -> dict[str, Any]:
    from factory.core.record import to_jsonable

    if args.cleanup:
        from factory.targets.aws import promote

        if args.only_target and args.only_target != ["aws"]:
            raise UsageError("--cleanup removes AWS leftovers only: drop --only-target or give aws")
        with buildlog.capture(build.log):
            cres = promote.cleanup(spec, build)
        summary: dict[str, Any] = {
            "removed_amis": list(cres.removed_amis),
            "removed_snapshots": list(cres.removed_snapshots),
            "kept_in_use": list(cres.kept),
            "manifest": str(cres.manifest),
        }
    else:
        ctx = Context(
            spec=spec,
            options=Options(promote=True, only_targets=tuple(args.only_target)),
            build_dir=build,
            sink=_show,
        )
        run_stages(ctx, ["promote"])
        promoted: PromoteResult = ctx.results["promote"]
        published = {
            k: v for k, v in promoted.targets.items() if not args.only_target or k in args.only_target
        }
        summary = {"targets": to_jsonable(published)}
        if "aws" in published:
            # The AWS fields as they were before there were other targets (scripts read them).
            summary.update({k: published["aws"].stats[k] for k in ("amis", "ssm")})
            summary["retired"] = list(published["aws"].retired.removed)
            summary["manifest"] = str(published["aws"].manifest)
    return summary
