"""The pipeline's loop through the stage interface: skip reasons, reuse of an unchanged build, --from,
key chaining, failure mapping; the interfaces every stage and target satisfy; spec selection and
parallelism bounds.

The stages are small fakes with the real interface (fake_stages.py); tests/vm/test_e2e.py runs the real ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from pathlib import Path
from typing import Any

import pytest
from fake_stages import NAMES, FakeResult, FakeStage, Log, MediaFailure, table

from factory import pipeline
from factory.commands import build as build_cmd
from factory.core import digest
from factory.core.events import Skip, StageFinished, StageProgress, StageStarted
from factory.core.record import BuildDir, to_jsonable
from factory.errors import EXIT_VERIFY, FactoryError, SealError, ToolError, UsageError, VerifyError
from factory.spec import Spec
from factory.stages.base import Stage

SPEC_YAML = """\
name: {name}
os: testbed
media: {{builtin: testbed, volume_label: TESTBED}}
kickstart: {{path: ks.cfg}}
vm: {{cpus: {cpus}, memory_mib: 1024}}
"""


def _spec(tmp_path: Path, name: str = "tb", cpus: int = 1) -> Spec:
    from factory.spec import load_spec

    (tmp_path / "ks.cfg").write_text("text\nshutdown\n")
    f = tmp_path / f"{name}.yaml"
    f.write_text(SPEC_YAML.format(name=name, cpus=cpus))
    return load_spec(f)


def _run(spec: Spec, tmp_path: Path, log: Log, from_stage: str | None = None, **overrides: Any) -> Any:
    options = pipeline.Options(build_root=tmp_path / "build", from_stage=from_stage)
    return pipeline.run_build(spec, options, log.sink, stages=tuple(table(log, **overrides).values()))


def _finished(log: Log) -> dict[str, StageFinished]:
    return {e.stage: e for e in log.events if isinstance(e, StageFinished)}


def _record(outcome: Any) -> dict[str, Any]:
    assert outcome.build_dir is not None
    return BuildDir.open(outcome.build_dir).record


def test_every_stage_satisfies_the_stage_interface() -> None:
    names = [s.name for s in pipeline.STAGES]
    assert names == list(NAMES)
    for stage in pipeline.STAGES:
        assert isinstance(stage, Stage), stage
        assert issubclass(stage.error, FactoryError)
        # Each stage's errors have a class and an exit code of their own (compliance shares verify's 6).
        assert stage.error.exit_code not in (0, 2), stage.name
        assert dataclasses.is_dataclass(stage.result_type), stage.name
    codes = {s.name: s.error.exit_code for s in pipeline.STAGES}
    assert len(set(codes.values()) - {EXIT_VERIFY}) == len(codes) - 2, codes


def test_every_target_satisfies_the_target_interface() -> None:
    from factory import targets
    from factory.targets.base import Target

    assert set(targets.REGISTRY) >= {"aws", "vsphere", "openstack", "registry"}
    for key in targets.REGISTRY:
        target = targets.get(key)
        assert isinstance(target, Target), key
        assert target.key == key


def _sample(kind: Any) -> Any:
    """A value of every field's type, so the round trip covers each result's whole shape."""
    import typing
    from enum import Enum

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(kind)})
    if origin is tuple:
        return (_sample(args[0]),) if args[-1] is Ellipsis else tuple(_sample(a) for a in args)
    if origin is dict:
        return {"k": _sample(args[1])}
    if origin is list:
        return [_sample(args[0])]
    if kind is Path:
        return Path("/build/x/file")
    if isinstance(kind, type) and issubclass(kind, Enum):
        return next(iter(kind))
    return {str: "s", int: 3, float: 1.5, bool: True}.get(kind, "any")


@pytest.mark.parametrize("stage", pipeline.STAGES, ids=lambda s: s.name)
def test_every_result_round_trips_through_the_record(stage: Any) -> None:
    import json

    value = _sample(stage.result_type)
    stored = json.loads(json.dumps(to_jsonable(value)))
    assert stage.load(stored) == value


def test_second_run_with_same_inputs_skips_what_was_done(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    log = Log()
    first = _run(spec, tmp_path, log)
    assert first.error is None, first.error
    assert log.calls == ["validate", "media", "install", "verify", "seal", "export"]
    again = Log()
    second = _run(spec, tmp_path, again)
    assert second.error is None
    assert second.build_dir == first.build_dir
    assert again.calls == ["validate", "media"]
    finished = _finished(again)
    for name in ("install", "verify", "seal", "export"):
        assert finished[name].skip is Skip.DONE_BEFORE, name
    assert finished["compliance"].skip is Skip.NOT_NEEDED
    assert finished["promote"].skip is Skip.NOT_REQUESTED
    assert second.stages["promote"] == {"status": "skipped", "seconds": 0.0, "skip": "not requested"}


def test_a_stage_that_always_runs_runs_again_with_the_same_inputs(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    promote = {"not_wanted": None, "runs_always": True}
    _run(spec, tmp_path, Log(), promote=promote)
    again = Log()
    _run(spec, tmp_path, again, promote=promote)
    # Publishing runs on every requested run (it resumes from the targets' manifests); nothing before it.
    assert again.calls == ["validate", "media", "promote"]
    assert pipeline.PromoteStage.always_run is True


def test_changed_iso_means_new_build(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = _run(spec, tmp_path, Log())
    log = Log()
    other_iso = FakeStage("media", log, needs=False)
    other_iso.run = lambda ctx: FakeResult("media", sha256="b" * 64)  # type: ignore[method-assign]
    second = _run(spec, tmp_path, log, media=other_iso)
    assert second.build_dir != first.build_dir
    assert "install" in log.calls


def test_from_stage_reruns_that_stage_and_later(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _run(spec, tmp_path, Log())
    log = Log()
    out = _run(spec, tmp_path, log, from_stage="seal")
    assert out.error is None
    assert log.calls == ["validate", "media", "seal", "export"]
    assert _finished(log)["verify"].skip is Skip.DONE_BEFORE


def test_from_a_stage_not_needed_reruns_what_follows(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _run(spec, tmp_path, Log())
    log = Log()
    _run(spec, tmp_path, log, from_stage="compliance")
    assert log.calls == ["validate", "media", "export"]


def test_a_stage_that_runs_again_invalidates_every_later_one(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _run(spec, tmp_path, Log())
    log = Log()
    # verify now reads something else (e.g. another check list): it and everything after it run.
    _run(spec, tmp_path, log, verify={"own_inputs": "checks-v2"})
    assert log.calls == ["validate", "media", "verify", "seal", "export"]


def test_keys_chain_each_stage_to_the_one_before(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    first = _record(_run(spec, tmp_path, Log()))["stages"]
    second = _record(_run(spec, tmp_path, Log(), verify={"own_inputs": "checks-v2"}, from_stage="verify"))[
        "stages"
    ]
    assert first["install"]["key"] == second["install"]["key"]
    # verify's own inputs changed: its key and every later key change with it.
    for name in ("verify", "seal", "export"):
        assert first[name]["key"] != second[name]["key"], name
    keys = [first[n]["key"] for n in ("validate", "media", "install", "verify", "seal", "export")]
    assert len(set(keys)) == len(keys)
    assert first["verify"]["key"] == digest.combine(first["install"]["key"], "verify", "")


def test_a_failing_verdict_is_recorded_with_its_result(tmp_path: Path) -> None:
    log = Log()
    out = _run(_spec(tmp_path), tmp_path, log, verify={"passes": False})
    assert out.exit_code == EXIT_VERIFY
    assert log.calls[-1] == "verify"  # nothing after it ran
    st = _record(out)["stages"]["verify"]
    assert st["status"] == "failed"
    assert st["result"]["passed"] is False  # the counts stay in the record: the gate and the reader see why
    assert st["error"] == "verify: failed its checks"
    assert _finished(log)["verify"].status == "failed"


def test_an_unexpected_exception_becomes_the_stage_error(tmp_path: Path) -> None:
    log = Log()
    seal = FakeStage("seal", log, raises=OSError(28, "No space left on device"))
    seal.error = SealError  # type: ignore[misc]
    out = _run(_spec(tmp_path), tmp_path, log, seal=seal)
    assert out.exit_code == SealError.exit_code
    assert out.error == "seal: OSError: [Errno 28] No space left on device"
    build = BuildDir.open(out.build_dir)
    assert build.record["stages"]["seal"]["status"] == "failed"
    assert "Traceback" in build.log.read_text()  # the traceback is in factory.log, not on the terminal


def test_a_factory_error_keeps_its_own_exit_code(tmp_path: Path) -> None:
    out = _run(_spec(tmp_path), tmp_path, Log(), export={"raises": ToolError("qemu-img: exit 1")})
    assert out.exit_code == ToolError.exit_code
    assert out.error == "qemu-img: exit 1"


def test_a_failure_before_the_build_dir_exists_leaves_none(tmp_path: Path) -> None:
    out = _run(_spec(tmp_path), tmp_path, Log(), media={"raises": MediaFailure("download failed")})
    assert out.exit_code == MediaFailure.exit_code
    assert out.build_dir is None
    assert not (tmp_path / "build").exists()


def test_interrupt_is_recorded_and_re_raised(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _run(spec, tmp_path, Log(), verify={"raises": KeyboardInterrupt()})
    (build_path,) = (tmp_path / "build" / spec.name).iterdir()
    st = BuildDir.open(build_path).record["stages"]["verify"]
    assert st == {**st, "status": "failed", "error": "verify: interrupted"}


def test_events_start_and_finish_each_stage_once(tmp_path: Path) -> None:
    log = Log()
    _run(_spec(tmp_path), tmp_path, log)
    started = [e.stage for e in log.events if isinstance(e, StageStarted)]
    finished = [e.stage for e in log.events if isinstance(e, StageFinished)]
    assert started == ["validate", "media", "install", "verify", "seal", "export"]
    assert finished == list(NAMES)


def test_from_verify_after_seal_explains_missing_key(tmp_path: Path) -> None:
    from factory.stages.base import Context
    from factory.stages.verify.stage import VerifyStage

    spec = _spec(tmp_path)
    build = BuildDir.create(tmp_path / "build", spec.name)
    ctx = Context(spec=spec, build_dir=build)
    with pytest.raises(VerifyError, match="build key is gone"):
        pipeline.run_stage_objects(ctx, [VerifyStage()])
    assert build.stage("verify") == {**(build.stage("verify") or {}), "status": "failed"}


def test_build_key_changes_with_each_input(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    base = pipeline.build_key("a" * 64, "text\n", spec)
    assert base == pipeline.build_key("a" * 64, "text\n", spec)
    assert base != pipeline.build_key("b" * 64, "text\n", spec)
    assert base != pipeline.build_key("a" * 64, "text\nshutdown\n", spec)
    assert base != pipeline.build_key("a" * 64, "text\n", _spec(tmp_path, cpus=2))


def _args(specs: list[Path], only: str = "", except_: str = "") -> argparse.Namespace:
    return argparse.Namespace(specs=specs, only=only, except_=except_)


@pytest.mark.parametrize(
    ("only", "except_", "expected"),
    [
        pytest.param("", "", ["a", "b"], id="all"),
        pytest.param("a", "", ["a"], id="only"),
        pytest.param("", "a", ["b"], id="except"),
    ],
)
def test_select_specs(tmp_path: Path, only: str, except_: str, expected: list[str]) -> None:
    files = [_spec(tmp_path, "a").source, _spec(tmp_path, "b").source]
    assert [s.name for s in build_cmd.select_specs(_args(files, only, except_))] == expected


@pytest.mark.parametrize(
    ("only", "except_", "message"),
    [
        pytest.param("zz", "", "no spec named 'zz'", id="unknown-only"),
        pytest.param("", "a,b", "left no spec", id="nothing-left"),
    ],
)
def test_select_specs_errors(tmp_path: Path, only: str, except_: str, message: str) -> None:
    files = [_spec(tmp_path, "a").source, _spec(tmp_path, "b").source]
    with pytest.raises(UsageError, match=message):
        build_cmd.select_specs(_args(files, only, except_))


def test_parallelism_is_bounded_by_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    specs = [_spec(tmp_path, n, cpus=2) for n in "abc"]
    assert build_cmd.host_parallelism(specs, 8) == 2
    assert build_cmd.host_parallelism(specs, 1) == 1
    with pytest.raises(UsageError):
        build_cmd.host_parallelism(specs, 0)


def test_install_progress_hides_the_kickstart_token(tmp_path: Path) -> None:
    from factory.stages.install import install
    from factory.stages.install.monitor import ProgressEvent, StageEvent

    log = Log()
    report = install._reporter(_spec(tmp_path).name, log.sink)
    report(StageEvent("Fetching kickstart from http://10.0.2.2:4567/s3cr3tT0ken/ks.cfg"))
    report(ProgressEvent("openssh-server", 3, 128))
    assert [(e.done, e.total, e.detail) for e in log.events if isinstance(e, StageProgress)] == [
        (None, None, "Fetching kickstart from http://10.0.2.2:4567/…"),
        (3, 128, "installing openssh-server"),
    ]
    assert "s3cr3t" not in repr(log.events)
