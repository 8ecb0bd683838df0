"""`factory validate [SPEC|KICKSTART ...]`: pykickstart syntax and the policy rules, as file:line findings.

Exit status: 0 clean, 1 findings, 2 a usage or input error (unreadable file, include loop, invalid spec).
Every argument is checked even when an earlier one fails, so CI sees all problems in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from factory.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, FactoryError, UsageError
from factory.spec import find_specs, load_spec
from factory.stages.validate.flatten import display_path
from factory.stages.validate.validate import Finding, Report, rules_table, validate_file, validate_spec

SPEC_SUFFIXES = (".yaml", ".yml")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check kickstarts with pykickstart and the policy rules",
        description=(
            "Validate each spec's kickstart (with the spec's pykickstart version and disabled rules) or bare "
            "kickstart files. With no argument, every spec under ./specs. "
            "Exit status: 0 clean, 1 findings, 2 usage or input error."
        ),
    )
    p.add_argument(
        "paths", nargs="*", type=Path, metavar="SPEC|KICKSTART", help="specs (*.yaml) or .ks files"
    )
    p.add_argument(
        "--version",
        dest="ks_version",
        default="RHEL7",
        metavar="VERSION",
        help="pykickstart version for bare kickstart files (default RHEL7; specs name their own)",
    )
    p.add_argument("--format", choices=("human", "json"), default="human", help="output format")
    p.add_argument("--list-rules", action="store_true", help="print the rules and exit")
    p.set_defaults(func=run)


def finding_json(f: Finding) -> dict[str, Any]:
    # Stable keys for CI; file is relative to the cwd when under it, line 0 means the whole file.
    return {
        "file": display_path(f.file),
        "line": f.line,
        "rule": f.rule,
        "severity": f.severity,
        "message": f.message,
    }


def check(path: Path, version: str) -> Report:
    if path.suffix in SPEC_SUFFIXES:
        return validate_spec(load_spec(path))
    return validate_file(path, version)


def run(args: argparse.Namespace) -> int:
    if args.list_rules:
        for name, description in rules_table():
            print(f"{name:24} {description}")
        return EXIT_OK
    paths: list[Path] = list(args.paths) or find_specs(Path.cwd())
    if not paths:
        raise UsageError("nothing to validate: give specs or kickstarts, or run where ./specs/*.yaml exist")
    reports: list[Report] = []
    errors = 0
    for path in paths:
        try:
            reports.append(check(path, args.ks_version))
        except FactoryError as exc:
            # One line per bad input; keep going so every argument gets its verdict.
            errors += 1
            print(f"error: {exc.message}", file=sys.stderr)
            if exc.details:
                print(exc.details, file=sys.stderr)
    findings = [f for r in reports for f in r.findings]
    # Notes (severity "note": what could not be checked) are shown but never change the exit status.
    notes = [n for r in reports for n in r.notes]
    if args.format == "json":
        print(json.dumps([finding_json(f) for f in [*findings, *notes]], indent=2))
    else:
        for f in findings:
            print(f"{f.where()}: [{f.rule}] {f.message}")
        for n in notes:
            print(f"{n.where()}: note: [{n.rule}] {n.message}")
        bad = sum(1 for r in reports if r.findings)
        summary = f"{len(findings)} problem(s) in {bad} of {len(reports)} kickstart(s)"
        if errors:
            summary += f"; {errors} input error(s)"
        summary = summary if findings or errors else f"{len(reports)} kickstart(s) clean"
        print(summary + (f"; {len(notes)} note(s)" if notes else ""))
    if errors:
        return EXIT_USAGE
    return EXIT_FINDINGS if findings else EXIT_OK
