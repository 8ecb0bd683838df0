"""The compliance gate: the sealed image, read offline, scanned with OpenSCAP against the spec's profile.

    gate(spec, build, image, image_sha256) -> ComplianceResult    # records stage "compliance"
    publish_metadata(spec, build) -> dict[str, str]               # what every target attaches to its image

Why the sealed image: it is the one whose sha256 is exported and published, so the scan result binds to
exactly what leaves the factory; booting it would undo the sealing, so it is read offline. Its root tree is
copied out (debugfs `rdump` for ext4, as factory.core.offline reads it; libguestfs `tar-out` for xfs/LVM) and
`oscap xccdf eval` evaluates it with OSCAP_PROBE_ROOT, so nothing is installed into the image. The ARF
result and the HTML report stay in BUILD/compliance/ with a JUnit file holding one case per failing rule.
The gate passes only when every failing rule has a waiver (with its reason) in the spec.

Run as root: the copy keeps owners and modes only then, and oscap reads /etc/shadow & co. only then. As
another user unreadable files come out as `error` results, which fail the gate (never a silent pass).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from factory.core import digest, offline
from factory.core.record import BuildDir, atomic_write_text
from factory.errors import ToolError, VerifyError
from factory.host import tools
from factory.spec import Accel, Spec
from factory.stages.compliance import scap

STAGE = "compliance"
OSCAP_TIMEOUT_S = 1800.0
EXTRACT_TIMEOUT_S = 1800.0
# oscap xccdf eval: 0 every rule passed, 2 some rule failed; anything else is the scanner failing.
OSCAP_OK = (0, 2)


@dataclass(frozen=True)
class Counts:
    passed: int
    failed: int  # failing and not waived: each one fails the gate
    waived: int
    other: int  # not applicable, not checked, informational...


@dataclass(frozen=True)
class FailedRule:
    rule: str
    result: str  # fail, error or unknown
    title: str
    severity: str
    waiver: str = ""  # the spec's reason when waived


@dataclass(frozen=True)
class ComplianceResult:
    passed: bool
    profile: str
    datastream: Path
    datastream_sha256: str
    benchmark: str
    datastream_version: str
    image_sha256: str
    counts: Counts
    failing: tuple[FailedRule, ...]
    waived: tuple[FailedRule, ...]
    # Waivers of rules that did not fail this time: kept (the next image may need them), and shown.
    unused_waivers: tuple[str, ...]
    arf: Path
    arf_sha256: str
    report: Path
    report_sha256: str
    junit: Path
    reader: str  # how the tree came out of the image: debugfs or guestfish
    extract_s: float
    scan_s: float

    def line(self) -> str:
        c = self.counts
        return f"{self.profile}: {c.passed} passed / {c.failed} failed / {c.waived} waived"


def _extract_guestfish(image: Path, dest: Path, accel: Accel) -> None:
    from factory.vm import accel as accel_mod

    tar = dest.parent / "tree.tar"
    script = f"tar-out / {tar} numericowner:true xattrs:true\n"
    tools.run(
        ["guestfish", "--ro", "-a", image, "-i"],
        input=script.encode(),
        env=offline.guestfish_env(accel_mod.resolve(accel)),
        timeout=EXTRACT_TIMEOUT_S,
    )
    try:
        tools.run(["tar", "-x", "-p", "--numeric-owner", "-f", tar, "-C", dest], timeout=EXTRACT_TIMEOUT_S)
    finally:
        tar.unlink(missing_ok=True)


def extract_tree(image: Path, dest: Path, accel: Accel = Accel.TCG) -> str:
    """Copy the root filesystem of `image` into the empty folder `dest`; returns the reader used."""
    with offline.raw_copy(image, dest.parent) as raw:
        root = offline.root_partition(raw)
        if root is not None:
            proc = tools.run(
                ["debugfs", "-R", f"rdump / {dest}", f"{raw}?offset={root.offset}"],
                timeout=EXTRACT_TIMEOUT_S,
            )
            # debugfs exits 0 whatever happens: a copy without /etc did not work.
            if not (dest / "etc").is_dir():
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                raise ToolError(f"debugfs could not copy the image's files out: {' | '.join(err[-3:])}")
            return "debugfs"
    _extract_guestfish(image, dest, accel)
    if not (dest / "etc").is_dir():
        raise ToolError(f"{image}: libguestfs copied no /etc out of the image")
    return "guestfish"


def evaluate(datastream: Path, profile: str, tree: Path, arf: Path, report: Path) -> float:
    """`oscap xccdf eval` of the offline `tree`; writes the ARF and HTML report atomically."""
    arf_tmp, report_tmp = arf.with_name(f".{arf.name}.tmp"), report.with_name(f".{report.name}.tmp")
    started = time.monotonic()
    try:
        proc = tools.run(
            ["oscap", "xccdf", "eval", "--profile", profile,
             "--results-arf", arf_tmp, "--report", report_tmp, datastream],
            env={"OSCAP_PROBE_ROOT": str(tree)},
            timeout=OSCAP_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        if proc.returncode not in OSCAP_OK or not arf_tmp.is_file():
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ToolError(
                f"oscap could not evaluate the image (exit status {proc.returncode}): "
                f"{' | '.join(err[-3:]) or 'no error output'}"
            )
        os.replace(arf_tmp, arf)
        os.replace(report_tmp, report)
    finally:
        arf_tmp.unlink(missing_ok=True)
        report_tmp.unlink(missing_ok=True)
    return time.monotonic() - started


def judge(
    results: tuple[scap.RuleResult, ...], waivers: dict[str, str]
) -> tuple[Counts, tuple[FailedRule, ...], tuple[FailedRule, ...], tuple[str, ...]]:
    """(counts, failing, waived, unused waivers): only a waiver with a reason turns a failure into waived."""
    failing: list[FailedRule] = []
    waived: list[FailedRule] = []
    passed = other = 0
    for r in results:
        if r.result == "pass":
            passed += 1
        elif r.result in scap.FAILING:
            reason = waivers.get(r.rule, "")
            (waived if reason else failing).append(FailedRule(r.rule, r.result, r.title, r.severity, reason))
        elif r.result != "notselected":
            other += 1
    failed_ids = {f.rule for f in (*failing, *waived)}
    unused = tuple(sorted(set(waivers) - failed_ids))
    return Counts(passed, len(failing), len(waived), other), tuple(failing), tuple(waived), unused


def junit_xml(profile: str, failing: tuple[FailedRule, ...], waived: tuple[FailedRule, ...]) -> str:
    """One test case per failing rule: a failure, or skipped with the waiver's reason."""
    suite = ET.Element(
        "testsuite",
        name=f"compliance {profile}",
        tests=str(len(failing) + len(waived)),
        failures=str(len(failing)),
        skipped=str(len(waived)),
        errors="0",
    )
    for rule in (*failing, *waived):
        case = ET.SubElement(suite, "testcase", classname="compliance", name=rule.rule)
        if rule.waiver:
            ET.SubElement(case, "skipped", message=f"waived: {rule.waiver}")
        else:
            text = f"{rule.title} (severity {rule.severity or 'unknown'})"
            ET.SubElement(case, "failure", message=f"{rule.result}: {text}", type=rule.result).text = text
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def scan(spec: Spec, image: Path, out: Path, *, image_sha256: str | None = None) -> ComplianceResult:
    """Scan `image` offline against the spec's profile; artifacts go to `out`. Never raises for failing
    rules (see `passed`); raises ToolError when the image cannot be read or oscap cannot evaluate."""
    comp = spec.compliance
    datastream = spec.compliance_datastream()
    if comp is None or datastream is None:
        raise VerifyError(f"{spec.source}: the spec has no compliance section to scan against")
    content = scap.read_content(datastream)
    sha = image_sha256 or digest.sha256_file(image)
    out.mkdir(parents=True, exist_ok=True)
    arf, report, junit = out / "arf.xml", out / "report.html", out / "junit.xml"
    with tempfile.TemporaryDirectory(prefix="factory-compliance-", dir=out) as tmp:
        tree = Path(tmp) / "root"
        tree.mkdir()
        started = time.monotonic()
        reader = extract_tree(image, tree, spec.vm.accel)
        extract_s = time.monotonic() - started
        try:
            scan_s = evaluate(datastream, comp.profile, tree, arf, report)
        finally:
            # rdump keeps modes: make every folder removable before the temporary folder goes.
            shutil.rmtree(tree, ignore_errors=True)
    counts, failing, waived, unused = judge(scap.rule_results(arf), {w.rule: w.reason for w in comp.waivers})
    atomic_write_text(junit, junit_xml(comp.profile, failing, waived))
    return ComplianceResult(
        passed=not failing,
        profile=comp.profile,
        datastream=datastream,
        datastream_sha256=digest.sha256_file(datastream),
        benchmark=content.benchmark,
        datastream_version=content.version,
        image_sha256=sha,
        counts=counts,
        failing=failing,
        waived=waived,
        unused_waivers=unused,
        arf=arf,
        arf_sha256=digest.sha256_file(arf),
        report=report,
        report_sha256=digest.sha256_file(report),
        junit=junit,
        reader=reader,
        extract_s=round(extract_s, 2),
        scan_s=round(scan_s, 2),
    )


def failure_message(spec: Spec, result: ComplianceResult) -> str:
    names = ", ".join(f.rule for f in result.failing[:5])
    more = f" and {len(result.failing) - 5} more" if len(result.failing) > 5 else ""
    return (
        f"{spec.name}: the sealed image fails {len(result.failing)} compliance rule(s) of {result.profile} "
        f"that the spec does not waive: {names}{more} (waive each with a reason in compliance.waivers, "
        f"or fix the image); see {result.report}"
    )


def stage_inputs(spec: Spec, image_sha256: str) -> str:
    """What the recorded scan depends on: the image, the compliance section and the datastream's bytes."""
    datastream = spec.compliance_datastream()
    ds_sha = digest.sha256_file(datastream) if datastream is not None and datastream.is_file() else "none"
    section = spec.compliance.model_dump_json() if spec.compliance is not None else "none"
    return digest.combine(image_sha256, digest.sha256_text(section), ds_sha)


def gate(spec: Spec, build: BuildDir, image: Path, image_sha256: str) -> ComplianceResult:
    """Scan `image` and record stage "compliance" (with the result, passing or not) through the pipeline's
    runner; raises ComplianceError (exit 6) naming the unwaived failing rules."""
    from factory.pipeline import run_stage_objects
    from factory.stages.base import Context
    from factory.stages.compliance.stage import ComplianceStage

    ctx = Context(spec=spec, build_dir=build)
    run_stage_objects(ctx, [ComplianceStage(image=image, image_sha256=image_sha256)])
    result: ComplianceResult = ctx.results[STAGE]
    return result


def recorded_line(build: BuildDir) -> str | None:
    """The summary line of the build's recorded scan ("profile: N passed / N failed / N waived")."""
    result = (build.stage(STAGE) or {}).get("result") or {}
    counts = result.get("counts")
    if not counts:
        return None
    return (
        f"{result.get('profile')}: {counts.get('passed', 0)} passed / {counts.get('failed', 0)} failed / "
        f"{counts.get('waived', 0)} waived"
    )


def publish_metadata(spec: Spec, build: BuildDir) -> dict[str, str]:
    """The compliance facts a target attaches to the published image (AMI tags, Glance properties, OCI
    labels...), with plain keys: each target adds its own prefix. Empty when the spec asks for no scan.

    Raises VerifyError when the spec asks for one and the build has no passing scan of its sealed image:
    this is the compliance half of the promotion gate."""
    if spec.compliance is None:
        return {}
    st = build.stage(STAGE) or {}
    result = st.get("result") or {}
    from factory.stages.base import recorded
    from factory.stages.seal.stage import SealStage

    seal = recorded(build, SealStage)
    sealed = seal.sealed_sha256 if seal is not None else None
    if st.get("status") != "ok" or not result.get("passed"):
        raise VerifyError(
            f"build {build.build_id}: the compliance scan has not passed (status: "
            f"{st.get('status', 'not run')}); refusing to publish (see `factory verify --compliance-only`)"
        )
    if not sealed or result.get("image_sha256") != sealed:
        raise VerifyError(
            f"build {build.build_id}: the compliance scan is not of the sealed image; refusing to publish "
            "(re-run `factory verify --compliance-only`)"
        )
    if st.get("inputs") != stage_inputs(spec, sealed):
        raise VerifyError(
            f"build {build.build_id}: the compliance scan was judged with another compliance section or "
            "datastream than the spec has now; refusing to publish (run `factory verify --compliance-only`)"
        )
    counts = result.get("counts") or {}
    return {
        "profile": str(result["profile"]),
        "benchmark": str(result.get("benchmark", "")),
        "datastream-version": str(result.get("datastream_version", "")),
        "passed": str(counts.get("passed", 0)),
        "failed": str(counts.get("failed", 0)),
        "waived": str(counts.get("waived", 0)),
        "report-sha256": str(result.get("report_sha256", "")),
        "image-sha256": str(sealed),
    }


def labels(spec: Spec, build: BuildDir) -> dict[str, str]:
    """publish_metadata as `compliance-*` keys, for a target (or the OCI export) that has one namespace."""
    return {f"compliance-{k}": v for k, v in publish_metadata(spec, build).items()}
