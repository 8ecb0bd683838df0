"""`python -m factory.testbed [--force]`: build (or reuse) the testbed ISO and print its path."""

from __future__ import annotations

import argparse
import logging
import sys

from factory.errors import FactoryError
from factory.testbed.build import build_testbed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m factory.testbed", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache has it")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        testbed = build_testbed(force=args.force)
    except FactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(testbed.iso)
    return 0


if __name__ == "__main__":
    sys.exit(main())
