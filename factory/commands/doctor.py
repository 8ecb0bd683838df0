"""`factory doctor`: is this host ready to build? QEMU, accelerator, host tools (with packages), cache.

Exit status: 0 when every capability a testbed build needs was proven (each probe does a small real job:
boots a kernel, makes an ISO, reads an image offline...), 3 otherwise; the others (EL's xfs re-check,
UEFI) are reported and only warn.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from factory import doctor
from factory.core.record import to_jsonable
from factory.errors import EXIT_OK, EXIT_TOOL
from factory.host import hostdeps
from factory.host.hostdeps import Missing, install_command


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check this host: QEMU, KVM/TCG, host tools, cache",
        description="Report QEMU, the accelerator verdict, each host tool (with the package that provides "
        "it) and the cache. Exit status: 0 ready, 3 a required tool is missing.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--install-host-deps",
        action="store_true",
        help="first install every missing tool the builds and the testbed need (apt-get/dnf, as root)",
    )
    p.set_defaults(func=run)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def report_json(report: doctor.Report) -> dict[str, Any]:
    doc: dict[str, Any] = to_jsonable(report)
    doc["ok"] = report.ok
    doc["missing_required"] = [t.name for t in report.missing_required]
    doc["failed"] = [c.name for c in report.failed]
    for entry, status in zip(doc["tools"], report.tools, strict=True):
        entry["required"] = status.required
    return doc


def print_report(report: doctor.Report, out: Console) -> None:
    out.print(f"QEMU: {report.qemu_version} ({report.qemu_path or 'not found'})")
    a = report.accel
    kvm = "absent" if not a.kvm_device else ("present" if a.kvm_accessible else "present, not accessible")
    out.print(
        f"Accelerator: /dev/kvm {kvm}; probe verdict: {a.probe_verdict}; vm.accel auto uses: {a.auto_uses}"
    )
    out.print("Host tools:")
    width = max(len(t.name) for t in report.tools)
    for t in report.tools:
        if t.path:
            out.print(f"  [green]ok[/]       {t.name:<{width}}  {t.needed_for:<8}  {t.version}", markup=True)
        else:
            mark = "[red]MISSING[/]" if t.required else "[yellow]missing[/]"
            out.print(
                f"  {mark}  {t.name:<{width}}  {t.needed_for:<8}  package: {t.deb} (Debian/Ubuntu), "
                f"{t.rpm} (Fedora/RHEL)",
                markup=True,
            )
    out.print("Capabilities (each proven by a probe):")
    for cap in report.capabilities:
        if cap.ok:
            out.print(f"  [green]ok[/]       {cap.what}: {cap.detail} ({cap.seconds:.1f} s)", markup=True)
        else:
            mark = "[red]FAILED[/] " if cap.needed_for in doctor.READY_FOR else "[yellow]failed[/] "
            out.print(f"  {mark}  {cap.what} ({cap.needed_for}): ", markup=True, end="")
            out.print(f"{cap.detail}; fix: {cap.fix}", markup=False)
    c = report.cache
    out.print(f"Cache: {c.path} ({_size(c.size)} used)")
    for iso in c.isos:
        out.print(f"  ISO {iso.path.name}  {_size(iso.size)}  sha256 verified")
    for key, sha in c.verified_local:
        out.print(f"  local ISO {key.split('|')[0]}  sha256 {sha[:16]}… verified")
    if c.remastered:
        out.print(f"  {len(c.remastered)} remastered ISO(s) in {c.path / 'remastered'}")
    missing = [Missing(t.name, t.deb, t.rpm) for t in report.tools if t.path is None]
    if missing:
        deb, rpm = (" ".join(install_command(missing, f)) for f in ("debian", "fedora"))
        out.print(f"Install them with: {deb}  (Debian/Ubuntu)  or  {rpm}  (Fedora/RHEL)", markup=False)
    if report.ok:
        out.print("ready")
        return
    problems = [t.name for t in report.missing_required] + [
        c.name for c in report.failed if c.name not in {t.name for t in report.missing_required}
    ]
    out.print("[red]not ready:[/] " + ", ".join(problems), markup=True)


def run(args: argparse.Namespace) -> int:
    if args.install_host_deps:
        # Everything but UEFI firmware, which only vm.firmware: uefi specs need.
        hostdeps.ensure((t.name for t in doctor.TOOLS if t.needed_for != "uefi"), install=True)
    report = doctor.diagnose()
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_report(report, Console(highlight=False, soft_wrap=True))
    return EXIT_OK if report.ok else EXIT_TOOL
