"""`factory diff BUILD_A BUILD_B [--json]`: what changed in the installed packages from build A to build B.

Reads the inventories verify recorded (`BUILD/verify/inventory.json`). Builds of two different specs are
compared, with a note saying so (how centos72 and ol72 differ is a fair question); builds whose images use
two package formats (rpm and dpkg) are refused, since their versions have no common order. Exit 0 when the
diff was printed (changes or not), 2 for a path that is not a build, a build with no inventory, or two
package formats.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from factory.core.record import BuildDir, to_jsonable
from factory.errors import EXIT_OK
from factory.stages.verify import pkgdiff


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "diff",
        help="compare the installed packages of two verified builds",
        description="Packages added, removed, upgraded and downgraded from BUILD_A to BUILD_B, and the "
        "kernel change, from the inventories verify recorded.",
    )
    p.add_argument("before", type=Path, metavar="BUILD_A", help="the earlier build (build/<spec>/<build-id>)")
    p.add_argument("after", type=Path, metavar="BUILD_B", help="the later build")
    p.add_argument("--json", action="store_true", help="print the diff as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    diff = pkgdiff.diff_builds(BuildDir.open(args.before), BuildDir.open(args.after))
    if args.json:
        print(json.dumps(to_jsonable(diff), indent=2))
        return EXIT_OK
    out = Console(highlight=False, soft_wrap=True)
    for line in pkgdiff.render(diff):
        out.print(line, markup=False)
    return EXIT_OK
