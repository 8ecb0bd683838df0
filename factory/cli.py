"""The `factory` command. One top-level handler turns every error into one line and an exit code.

Exit codes (also in the README):
  0 success · 1 findings (validation problems, failed checks) · 2 usage or input error ·
  3 host tool missing or failed · 4 media · 5 install failed · 6 verification failed · 7 export ·
  8 AWS · 9 publishing (several targets) · 10 vSphere · 11 OpenStack ·
  70 internal error (a bug: run with --debug for the traceback) · 130 interrupted
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from rich.console import Console

from factory import __version__
from factory.core import buildlog
from factory.errors import EXIT_INTERRUPTED, FactoryError

EXIT_INTERNAL = 70

# Subcommand modules under factory/commands/, in help order; each has register(subparsers).
COMMANDS = ("validate", "build", "plan", "verify", "diff", "promote", "export", "console", "doctor")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own exit status for usage errors is 2 too; keep its message to one line.
        self.exit(2, f"factory: error: {message} (see 'factory --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="factory", description="Build, verify and promote RHEL-family OS images.")
    parser.add_argument("--version", action="version", version=f"factory {__version__}")
    parser.add_argument("--debug", action="store_true", help="log everything and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"factory.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug or os.environ.get("FACTORY_DEBUG"))
    # Library warnings and their tracebacks go to the build's log file, not the terminal (see buildlog.py).
    buildlog.configure(debug)
    try:
        code: int = args.func(args)
        return code
    except FactoryError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", markup=True, highlight=False)
        if exc.details:
            err_console.print(exc.details, markup=False)
        for art in exc.artifacts:
            err_console.print(f"  see: {art}", markup=False)
        if debug:
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        err_console.print(
            f"internal error: {type(exc).__name__}: {exc} (a bug; run with --debug for the traceback)",
            markup=False,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
