"""`factory build`: the stages in order, each timed, recorded and skippable when its inputs are unchanged.

    validate -> media -> install -> verify -> seal [-> compliance] -> export [-> promote]

A build is keyed by the hashes of its ISO, flattened kickstart, spec and factory version. A later run
with the same key reopens that build directory and skips every stage already done, so an unchanged input
set reuses the verified image instead of reinstalling. `from_stage` forces a stage and all after it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory import __version__
from factory.core import buildlog, digest
from factory.core.record import STAGES, BuildDir
from factory.errors import ComplianceError, FactoryError, VerifyError
from factory.spec import Spec
from factory.stages.compliance import compliance
from factory.vm import sshkey

BUILD_STAGES = STAGES  # validate, media, install, verify, seal, export, promote
_URL_PATH = re.compile(r"(https?://[^/\s]+/)\S+")


@dataclass(frozen=True)
class Options:
    promote: bool = False
    verify: bool = True
    from_stage: str | None = None
    keep_on_error: bool = False
    build_root: Path = Path("build")


@dataclass
class Outcome:
    """What one spec's build did, for the final table and --json."""

    spec: str
    build_dir: Path | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {status, seconds}
    image_sha256: str | None = None
    # "profile: N passed / N failed / N waived" when the spec has a compliance section and it was scanned.
    compliance: str | None = None
    amis: dict[str, dict[str, str]] = field(default_factory=dict)
    # target key -> what it published (factory.targets.base.Published)
    published: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    exit_code: int = 0
    exception: FactoryError | None = None


# Called with (spec name, stage, event, seconds): event is "start", "ok", "skipped" or "failed".
StageListener = Callable[[str, str, str, float], None]
# Called with (spec name, stage, done, total, detail) while a stage works: bytes, packages, copies...
ProgressListener = Callable[[str, str, float | None, float | None, str], None]


def _no_progress(spec: str, stage: str, done: float | None, total: float | None, detail: str) -> None:
    return None


def build_key(iso_sha256: str, kickstart_text: str, spec: Spec) -> str:
    return digest.combine(iso_sha256, digest.sha256_text(kickstart_text), spec.digest(), __version__)


def build_inputs(spec: Spec, iso_sha256: str) -> tuple[str, dict[str, str]]:
    """The build key and the input hashes it is made of (recorded; `factory plan` compares them)."""
    from factory.stages.validate import flatten

    kickstart_text = flatten.flatten_for_spec(spec).text
    inputs = {
        "iso_sha256": iso_sha256,
        "kickstart_sha256": digest.sha256_text(kickstart_text),
        "spec_sha256": spec.digest(),
        "factory_version": __version__,
    }
    return build_key(iso_sha256, kickstart_text, spec), inputs


def find_build(root: Path, spec_name: str, key: str | None, stage: str = "install") -> BuildDir | None:
    """The newest build of this spec with the same input key (None: any key) whose `stage` succeeded (the
    install: a build to resume; verify: a verified image that makes a rebuild pointless)."""
    spec_dir = root / spec_name
    if not spec_dir.is_dir():
        return None
    for path in sorted(spec_dir.iterdir(), reverse=True):
        if not (path / "record.json").is_file():
            continue
        try:
            build = BuildDir.open(path)
        except FactoryError:
            continue
        if (key is None or build.record.get("key") == key) and build.stage_ok(stage):
            return build
    return None


class Runner:
    def __init__(
        self, spec: Spec, options: Options, listener: StageListener, progress: ProgressListener = _no_progress
    ) -> None:
        self.spec = spec
        self.options = options
        self.listener = listener
        self.progress = progress
        self.outcome = Outcome(spec=spec.name)
        self.forced = False  # set once from_stage is reached: that stage and all after it re-run

    def _must_run(self, build: BuildDir, name: str) -> bool:
        # A stage that runs invalidates every stage after it: they all run too.
        if self.options.from_stage == name or not build.stage_ok(name):
            self.forced = True
        return self.forced

    @contextmanager
    def _stage(self, name: str, build: BuildDir | None = None) -> Iterator[dict[str, Any]]:
        self.listener(self.spec.name, name, "start", 0.0)
        started = time.monotonic()
        try:
            if build is None:
                holder: dict[str, Any] = {}
                yield holder
            else:
                with build.stage_run(name) as holder:
                    yield holder
        except BaseException:
            seconds = time.monotonic() - started
            self.outcome.stages[name] = {"status": "failed", "seconds": round(seconds, 1)}
            self.listener(self.spec.name, name, "failed", seconds)
            raise
        seconds = time.monotonic() - started
        self.outcome.stages[name] = {"status": "ok", "seconds": round(seconds, 1)}
        self.listener(self.spec.name, name, "ok", seconds)

    def _skip(self, name: str) -> None:
        self.outcome.stages[name] = {"status": "skipped", "seconds": 0.0}
        self.listener(self.spec.name, name, "skipped", 0.0)

    def run(self) -> Outcome:
        from factory.stages.media import media
        from factory.stages.validate import validate

        spec = self.spec
        with self._stage("validate"):
            report = validate.validate_spec(spec)
            if report.findings:
                first = report.findings[0]
                raise FactoryError(
                    f"kickstart validation found {len(report.findings)} problem(s); first: "
                    f"{first.where()}: [{first.rule}] {first.message} (run `factory validate`)"
                )
        with self._stage("media") as holder:
            medium = media.prepare(
                spec, progress=lambda done, total: self.progress(spec.name, "media", done, total, "download")
            )
            holder["result"] = medium
        key, inputs = build_inputs(spec, medium.sha256)
        build = find_build(self.options.build_root, spec.name, key)
        if build is None:
            build = BuildDir.create(self.options.build_root, spec.name)
            build.set("key", key)
            build.set("inputs", inputs)
        self.outcome.build_dir = build.path
        build.record_stage("validate", "ok", result={"findings": 0})
        build.record_stage("media", "ok", result=medium)
        with buildlog.capture(build.path):
            self._install(build, medium)
        return self.outcome

    def _install(self, build: BuildDir, medium: Any) -> None:
        from factory.stages.install import install

        spec = self.spec
        if self._must_run(build, "install"):
            with self._stage("install", build) as holder:
                result = install.install(
                    spec,
                    medium,
                    build,
                    keep_on_error=self.options.keep_on_error,
                    progress=self._install_progress,
                )
                holder["result"] = result
        else:
            self._skip("install")
        disk = build.path / "disk.qcow2"
        if not self.options.verify:
            self.outcome.image_sha256 = digest.sha256_file(disk)
            scan = ("compliance",) if spec.compliance is not None else ()
            for name in ("verify", "seal", *scan, "export", "promote"):
                self._skip(name)
            return
        self._verify_seal_export(build, disk)

    def _install_progress(self, event: Any) -> None:
        from factory.stages.install.monitor import ProgressEvent, StageEvent

        if isinstance(event, ProgressEvent):
            self.progress(self.spec.name, "install", event.done, event.total, f"installing {event.package}")
        elif isinstance(event, StageEvent):
            # The kickstart's URL path is its access token: shown as "…" in logs and on screen.
            text = _URL_PATH.sub(r"\1…", event.text)
            self.progress(self.spec.name, "install", None, None, text)

    def _verify_seal_export(self, build: BuildDir, disk: Path) -> None:
        from factory.stages.export import export
        from factory.stages.seal import seal
        from factory.stages.verify import inventory, verify

        spec = self.spec
        if self._must_run(build, "verify"):
            key = _build_key(build)
            with self._stage("verify", build) as holder:
                vres = verify.verify(spec, disk, build, key=key, generalise_boot=True)
                holder["result"] = vres
                if not vres.passed:
                    raise VerifyError(
                        f"{spec.name}: the image failed its acceptance tests "
                        f"({vres.summary}); see {vres.junit}",
                        artifacts=(vres.junit, vres.transcript),
                    )
        else:
            self._skip("verify")
        if self._must_run(build, "seal"):
            key = _build_key(build)
            with self._stage("seal", build) as holder:
                sres = seal.seal(spec, disk, build, key=key)
                holder["result"] = sres
        else:
            self._skip("seal")
        seal_result = (build.stage("seal") or {})["result"]
        sealed = Path(seal_result["sealed_image"])
        self.outcome.image_sha256 = seal_result["sealed_sha256"]
        if spec.compliance is not None:
            self._compliance(build, sealed, seal_result["sealed_sha256"])
        elif self.options.from_stage == "compliance":
            self.forced = True  # no scan to re-run: re-run what follows it
        if self._must_run(build, "export"):
            with self._stage("export", build) as holder:
                media_result = (build.stage("media") or {}).get("result") or {}
                holder["result"] = export.export(
                    spec,
                    sealed,
                    seal_result["sealed_sha256"],
                    build.path / "export",
                    build_id=build.build_id,
                    labels=compliance.labels(spec, build),
                    iso=Path(media_result["iso"]) if media_result.get("iso") else None,
                    inventory=inventory.recorded(build.path),
                )
        else:
            self._skip("export")
        if self.options.promote:
            self._promote(build)
        else:
            self._skip("promote")

    def _compliance(self, build: BuildDir, sealed: Path, sealed_sha256: str) -> None:
        from factory.stages.compliance import compliance

        if not build.stage_ok(compliance.STAGE, compliance.stage_inputs(self.spec, sealed_sha256)):
            # Another image, profile, waiver or datastream: the recorded verdict says nothing about this one.
            self.forced = True
        if self._must_run(build, compliance.STAGE):
            # The gate records the stage itself: a failing scan keeps its counts in the record.
            with self._stage(compliance.STAGE):
                try:
                    compliance.gate(self.spec, build, sealed, sealed_sha256)
                except ComplianceError:
                    self.outcome.compliance = compliance.recorded_line(build)
                    raise
        else:
            self._skip(compliance.STAGE)
        self.outcome.compliance = compliance.recorded_line(build)

    def _promote(self, build: BuildDir) -> None:
        """Publish to every target the spec names (AWS, vSphere, OpenStack...), each behind the gate."""
        from factory.targets import runner
        from factory.targets.base import TargetContext, TargetEvent

        spec = self.spec

        def event(ev: TargetEvent) -> None:
            detail = f"{ev.target} {ev.step} {ev.detail}"
            self.progress(spec.name, "promote", ev.done or None, ev.total or None, detail)

        ctx = TargetContext(spec=spec, build=build, events=event)
        chosen = runner.select(ctx)
        if not chosen:
            raise FactoryError(
                f"{spec.source}: --promote given but the spec names no target (aws, vsphere, openstack...)"
            )
        with self._stage("promote", build) as holder:
            published = runner.publish(ctx, chosen)
            holder["result"] = {"targets": published}
            self.outcome.published = published
            if "aws" in published:
                self.outcome.amis = published["aws"].stats.get("amis", {})


def _build_key(build: BuildDir) -> sshkey.BuildKey:
    if not (build.path / "build-key").is_file():
        # Sealing deletes the key: the sealed image cannot be logged into again, by design.
        raise FactoryError(
            f"{build.path}: the build key is gone (removed when the image was sealed); "
            "re-run with --from install to verify again"
        )
    return sshkey.load(build.path)


def run_build(
    spec: Spec, options: Options, listener: StageListener, progress: ProgressListener = _no_progress
) -> Outcome:
    """Run one spec's build; a FactoryError ends it and is kept in the outcome, with the stages so far."""
    runner = Runner(spec, options, listener, progress)
    try:
        outcome = runner.run()
    except FactoryError as exc:
        runner.outcome.error = exc.message
        runner.outcome.exit_code = exc.exit_code
        runner.outcome.exception = exc
        outcome = runner.outcome
    if outcome.build_dir is not None:
        build = BuildDir.open(outcome.build_dir)
        build.set("result", {"status": "failed" if outcome.error else "ok", "error": outcome.error})
    return outcome
