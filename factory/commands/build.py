"""`factory build SPEC...`: validate -> media -> install -> verify -> seal [-> compliance] -> export
[-> promote]."""

from __future__ import annotations

import argparse
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from factory.core import paths
from factory.core.events import Event, StageFinished, StageProgress, StageStarted
from factory.errors import SpecError, ToolError, UsageError
from factory.pipeline import BUILD_STAGES, Options, Outcome, jsonable_outcome, run_build
from factory.spec import Spec, find_specs, load_spec


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="build, verify, seal and export images (and promote with --promote)",
        description="Run the pipeline for each spec. With no SPEC, every spec under ./specs.",
    )
    p.add_argument("specs", nargs="*", type=Path, metavar="SPEC", help="spec files (specs/*.yaml)")
    p.add_argument(
        "--promote", action="store_true", help="publish the verified image to every target the spec names"
    )
    p.add_argument(
        "--no-verify", action="store_true", help="stop after the install (nothing can be promoted)"
    )
    p.add_argument("--from", dest="from_stage", choices=BUILD_STAGES[2:], help="re-run from this stage on")
    p.add_argument("--only", default="", help="comma-separated spec names to build")
    p.add_argument("--except", dest="except_", default="", help="comma-separated spec names to skip")
    p.add_argument("-j", "--jobs", type=int, default=1, help="build several specs at once (bounded by host)")
    p.add_argument("--keep-on-error", action="store_true", help="keep a failed install's VM paused")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument(
        "--install-host-deps", action="store_true", help="apt/dnf install missing host tools (root)"
    )
    p.add_argument("--build-dir", type=Path, default=None, help="where builds go (default ./build)")
    p.set_defaults(func=run)


def select_specs(args: argparse.Namespace) -> list[Spec]:
    files: list[Path] = list(args.specs) or find_specs(Path.cwd())
    if not files:
        raise UsageError("no spec given and none found under ./specs")
    specs = [load_spec(f) for f in files]
    only = {n for n in args.only.split(",") if n}
    excluded = {n for n in args.except_.split(",") if n}
    names = {s.name for s in specs}
    for unknown in sorted((only | excluded) - names):
        raise UsageError(f"--only/--except: no spec named {unknown!r} (have: {', '.join(sorted(names))})")
    chosen = [s for s in specs if (not only or s.name in only) and s.name not in excluded]
    if not chosen:
        raise UsageError("--only/--except left no spec to build")
    return chosen


def host_parallelism(specs: list[Spec], requested: int) -> int:
    """At most `requested` builds, bounded by the host's cores and memory (each VM as its spec asks)."""
    if requested < 1:
        raise UsageError("-j must be at least 1")
    cores = os.cpu_count() or 1
    widest = max(s.vm.cpus for s in specs)
    biggest = max(s.vm.memory_mib for s in specs)
    mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return max(1, min(requested, len(specs), max(1, cores // widest), max(1, (mem_mib - 1024) // biggest)))


class Reporter:
    """One live line per stage with elapsed time on a terminal; plain lines elsewhere (CI logs)."""

    def __init__(self, console: Console, prefix_names: bool) -> None:
        self.console = console
        self.prefix = prefix_names
        self.lock = threading.Lock()
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(finished_text="✓"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[detail]}", style="dim"),
            console=console,
            disable=not self.live,
        )
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.last_detail: dict[tuple[str, str], str] = {}

    def event(self, ev: Event) -> None:
        if isinstance(ev, StageStarted):
            self.stage_event(ev.spec, ev.stage, "start", 0.0)
        elif isinstance(ev, StageFinished):
            self.stage_event(ev.spec, ev.stage, ev.status, ev.seconds, ev.skip.value if ev.skip else "")
        elif isinstance(ev, StageProgress):
            self.on_progress(ev.spec, ev.stage, ev.done, ev.total, ev.detail)

    def stage_event(self, spec: str, stage: str, event: str, seconds: float, reason: str = "") -> None:
        label = f"{spec}: {stage}" if self.prefix else stage
        with self.lock:
            if self.live:
                if event == "start":
                    self.tasks[(spec, stage)] = self.progress.add_task(label, total=None, detail="")
                    return
                task = self.tasks.get((spec, stage)) or self.progress.add_task(label, total=None, detail="")
                mark = {"ok": "", "skipped": f" [dim](skipped: {reason})[/]", "failed": " [red]failed"}
                self.progress.update(task, description=label + mark[event], total=1, completed=1, detail="")
                if event == "failed":
                    self.progress.stop_task(task)
            elif event == "skipped":
                self.console.print(f"{label}: skipped ({reason})", markup=False, highlight=False)
            elif event != "start":
                self.console.print(f"{label}: {event} ({seconds:.1f} s)", markup=False, highlight=False)

    def on_progress(
        self, spec: str, stage: str, done: float | None, total: float | None, detail: str
    ) -> None:
        with self.lock:
            if self.live:
                task = self.tasks.get((spec, stage))
                if task is not None:
                    if done is not None:
                        self.progress.update(task, completed=done, total=total)
                    self.progress.update(task, detail=detail)
            elif done is None and detail != self.last_detail.get((spec, stage)):
                # Plain logs (CI): the installer's stage lines and promotion steps, not every package.
                self.last_detail[(spec, stage)] = detail
                label = f"{spec}: {stage}" if self.prefix else stage
                self.console.print(f"{label}: {detail}", markup=False, highlight=False)


def summary_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="factory build")
    for col in ("spec", "stages (seconds)", "image sha256", "result"):
        table.add_column(col)
    for o in outcomes:
        stages = ", ".join(
            f"{n} {v['seconds']:.1f}" if v["status"] == "ok" else f"{n} {v['status']}"
            for n, v in o.stages.items()
        )
        table.add_row(
            o.spec, stages, (o.image_sha256 or "-")[:16], "ok" if not o.error else f"[red]{o.error}"
        )
    return table


def compliance_lines(outcomes: list[Outcome]) -> list[str]:
    """One line per scanned spec: profile, passed / failed / waived (failed counts unwaived rules only)."""
    return [f"compliance: {o.spec}: {o.compliance}" for o in outcomes if o.compliance]


def package_lines(outcomes: list[Outcome]) -> list[str]:
    """One line per verified spec: its package count and what changed since its previous verified build."""
    from factory.stages.verify import pkgdiff

    lines = []
    for o in outcomes:
        line = pkgdiff.recorded_line(o.build_dir) if o.build_dir is not None else None
        if line is not None:
            lines.append(f"packages: {o.spec}: {line}")
    return lines


def ami_table(outcomes: list[Outcome]) -> Table | None:
    rows = [
        (o.spec, account, region, ami)
        for o in outcomes
        for account, regions in o.amis.items()
        for region, ami in regions.items()
    ]
    if not rows:
        return None
    table = Table(title="promoted AMIs")
    for col in ("spec", "account (profile)", "region", "AMI"):
        table.add_column(col, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def target_tables(outcomes: list[Outcome]) -> list[Table]:
    """One table per target other than AWS (which has its AMI table): where each image is, its name and id."""
    from factory import targets

    keys = [k for k in targets.REGISTRY if k != "aws" and any(k in o.published for o in outcomes)]
    tables = []
    for key in keys:
        table = Table(title=f"published: {targets.get(key).label}")
        for col in ("spec", "location", "name", "id", "state"):
            table.add_column(col, no_wrap=True)
        for o in outcomes:
            pub = o.published.get(key)
            for image in pub.images if pub is not None else ():
                table.add_row(o.spec, image.location, image.name, image.id, image.state)
        tables.append(table)
    return tables


def preflight(specs: list[Spec], *, install: bool) -> None:
    """Before anything boots: every capability these specs need is installed (when asked) and proven,
    so a missing piece fails in seconds with its fix, not after install and verify."""
    from factory.host import capabilities, hostdeps

    needed = list(dict.fromkeys(n for s in specs for n in capabilities.needed_by(s)))
    # A compliance spec's default SCAP datastream is a host file too (ssg-nondebian for EL 7).
    datastreams = [
        str(path)
        for s in specs
        if s.compliance is not None
        and s.compliance.datastream is None
        and (path := s.compliance_datastream()) is not None
    ]
    hostdeps.ensure((*capabilities.tools_of(needed), *datastreams), install=install)
    failed = [c for c in capabilities.check(needed, reuse=True) if not c.ok]
    if failed:
        raise ToolError(
            "this host cannot build: " + "; ".join(f"{c.what}: {c.detail} (fix: {c.fix})" for c in failed)
        )
    for spec in specs:
        if spec.compliance is not None:
            from factory.stages.compliance import scap

            # Deferred when the spec was loaded without its datastream installed: checked now that it is.
            problems = scap.spec_problems(spec)
            if problems:
                raise SpecError(spec.source, problems)


def run(args: argparse.Namespace) -> int:
    specs = select_specs(args)
    preflight(specs, install=args.install_host_deps)
    options = Options(
        promote=args.promote,
        verify=not args.no_verify,
        from_stage=args.from_stage,
        keep_on_error=args.keep_on_error,
        build_root=args.build_dir or paths.build_root(),
    )
    if args.promote and args.no_verify:
        raise UsageError("--promote needs verification: drop --no-verify")
    jobs = host_parallelism(specs, args.jobs)
    console = Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # CI logs: no 80-column tables
    reporter = Reporter(console, prefix_names=len(specs) > 1)
    with reporter.progress:
        if jobs == 1:
            outcomes = [run_build(s, options, reporter.event) for s in specs]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                outcomes = list(pool.map(lambda s: run_build(s, options, reporter.event), specs))
    errors = [o.exception for o in outcomes if o.exception is not None]
    if args.json:
        print(json.dumps([jsonable_outcome(o) for o in outcomes], indent=2))
    else:
        console.print(summary_table(outcomes))
        for line in (*compliance_lines(outcomes), *package_lines(outcomes)):
            console.print(line, markup=False, highlight=False)
        amis = ami_table(outcomes)
        if amis is not None:
            console.print(amis)
        for table in target_tables(outcomes):
            console.print(table)
    if len(errors) == 1 and len(specs) == 1:
        raise errors[0]  # the top-level handler prints it with its artifacts and exit code
    for exc in errors:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
    return max((o.exit_code for o in outcomes), default=0)
