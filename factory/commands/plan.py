"""`factory plan [SPEC ...]`: the build matrix as JSON, or `--format github` for a `strategy.matrix`.

Exit status: 0 the plan was printed; 2 a spec could not be read (one line per bad spec, naming it, and no
matrix at all: a partial matrix would silently leave a spec out of the scheduled rebuild).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from factory.errors import EXIT_OK, EXIT_USAGE, FactoryError, UsageError
from factory.spec import find_specs, load_spec


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "plan",
        help="print the build matrix: resources, targets, changed since the last verified build",
        description=(
            "One entry per spec (default: every spec under ./specs): the host it needs (cores, memory, "
            "disk, KVM), its targets, whether it fits a GitHub hosted runner, and whether its inputs changed "
            "since its last verified build. Exit status: 0 printed, 2 a spec could not be read."
        ),
    )
    p.add_argument("specs", nargs="*", type=Path, metavar="SPEC", help="spec files (specs/*.yaml)")
    p.add_argument(
        "--format",
        choices=("json", "github"),
        default="json",
        help="json: every entry; github: one line for strategy.matrix, only specs to build",
    )
    p.add_argument("--all", action="store_true", help="github format: keep unchanged specs in the matrix too")
    p.add_argument(
        "--build-dir",
        type=Path,
        default=None,
        help="where builds are (default $FACTORY_BUILD_DIR or ./build)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factory import plan
    from factory.core import paths as factory_paths

    paths: list[Path] = list(args.specs) or find_specs(Path.cwd())
    if not paths:
        raise UsageError("nothing to plan: give specs, or run where ./specs/*.yaml exist")
    build_root: Path = args.build_dir or factory_paths.build_root()
    entries: list[plan.Entry] = []
    bad = 0
    for path in paths:
        try:
            entries.append(plan.plan_spec(load_spec(path), build_root))
        except FactoryError as exc:
            bad += 1
            # One line per bad spec, always naming it (a broken %include names only the kickstart).
            line = exc.message if str(path) in exc.message else f"{path}: {exc.message}"
            print(f"error: {line}", file=sys.stderr)
    if bad:
        return EXIT_USAGE
    if args.format == "github":
        # One line: the workflow writes it to $GITHUB_OUTPUT as `matrix=<this>`.
        print(json.dumps(plan.github_matrix(entries, include_unchanged=args.all), separators=(",", ":")))
    else:
        print(json.dumps([e.to_json() for e in entries], indent=2))
    return EXIT_OK
