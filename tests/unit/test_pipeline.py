"""The build runner: keys, reuse of an unchanged build, --from, spec selection and parallelism bounds.

The stage functions are replaced by small fakes here; tests/vm/test_e2e.py runs the real ones.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory import pipeline
from factory.commands import build as build_cmd
from factory.core.record import BuildDir
from factory.errors import UsageError
from factory.spec import Spec

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


@dataclass(frozen=True)
class _Media:
    iso: Path
    sha256: str
    volume_label: str = "TESTBED"


@dataclass(frozen=True)
class _Findings:
    findings: tuple[Any, ...] = ()


class _Fakes:
    """Counts how often each stage ran."""

    def __init__(self, tmp_path: Path, iso_sha: str = "a" * 64) -> None:
        self.calls: list[str] = []
        self.tmp = tmp_path
        self.iso_sha = iso_sha

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import factory.stages.export.export
        import factory.stages.install.install
        import factory.stages.media.media
        import factory.stages.seal.seal
        import factory.stages.validate.validate
        import factory.stages.verify.verify

        monkeypatch.setattr(factory.stages.validate.validate, "validate_spec", lambda spec: _Findings())
        monkeypatch.setattr(factory.stages.media.media, "prepare", self.media)
        monkeypatch.setattr(factory.stages.install.install, "install", self.install_stage)
        monkeypatch.setattr(factory.stages.verify.verify, "verify", self.verify)
        monkeypatch.setattr(factory.stages.seal.seal, "seal", self.seal)
        monkeypatch.setattr(factory.stages.export.export, "export", self.export)

    def media(self, spec: Spec, **kw: Any) -> _Media:
        self.calls.append("media")
        return _Media(self.tmp / "x.iso", self.iso_sha)

    def install_stage(self, spec: Spec, media: Any, build: BuildDir, **kw: Any) -> dict[str, str]:
        self.calls.append("install")
        (build.path / "disk.qcow2").write_bytes(b"disk")
        (build.path / "build-key").write_text("private")
        (build.path / "build-key.pub").write_text("ssh-ed25519 AAAA image-factory-build-key")
        return {"disk": str(build.path / "disk.qcow2")}

    def verify(self, spec: Spec, image: Path, build: BuildDir, **kw: Any) -> Any:
        self.calls.append("verify")

        @dataclass(frozen=True)
        class R:
            passed: bool = True
            image_sha256: str = "d" * 64
            summary: str = "ok"
            junit: Path = Path("j")
            transcript: Path = Path("t")

        return R()

    def seal(self, spec: Spec, image: Path, build: BuildDir, **kw: Any) -> dict[str, Any]:
        self.calls.append("seal")
        return {"sealed_image": str(build.path / "disk.qcow2"), "sealed_sha256": "e" * 64}

    def export(
        self,
        spec: Spec,
        image: Path,
        sha: str,
        out: Path,
        *,
        build_id: str,
        iso: Path | None,
        labels: dict[str, str],
        inventory: Any = None,
    ) -> dict[str, Any]:
        self.calls.append("export")
        return {"artifacts": []}


def _events() -> tuple[list[tuple[str, str]], pipeline.StageListener]:
    seen: list[tuple[str, str]] = []
    return seen, lambda spec, stage, event, secs: seen.append((stage, event)) if event != "start" else None


def test_second_run_with_same_inputs_skips_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _Fakes(tmp_path)
    fakes.install(monkeypatch)
    spec = _spec(tmp_path)
    options = pipeline.Options(build_root=tmp_path / "build")
    first = pipeline.run_build(spec, options, _events()[1])
    assert first.error is None
    assert fakes.calls == ["media", "install", "verify", "seal", "export"]
    fakes.calls.clear()
    seen, listener = _events()
    second = pipeline.run_build(spec, options, listener)
    assert second.error is None
    assert second.build_dir == first.build_dir
    assert fakes.calls == ["media"]
    assert ("install", "skipped") in seen
    assert ("verify", "skipped") in seen


def test_changed_iso_means_new_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _Fakes(tmp_path)
    fakes.install(monkeypatch)
    spec = _spec(tmp_path)
    options = pipeline.Options(build_root=tmp_path / "build")
    first = pipeline.run_build(spec, options, _events()[1])
    fakes.iso_sha = "b" * 64
    fakes.calls.clear()
    second = pipeline.run_build(spec, options, _events()[1])
    assert second.build_dir != first.build_dir
    assert "install" in fakes.calls


def test_from_stage_reruns_that_stage_and_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _Fakes(tmp_path)
    fakes.install(monkeypatch)
    spec = _spec(tmp_path)
    pipeline.run_build(spec, pipeline.Options(build_root=tmp_path / "build"), _events()[1])
    fakes.calls.clear()
    out = pipeline.run_build(
        spec, pipeline.Options(build_root=tmp_path / "build", from_stage="export"), _events()[1]
    )
    assert out.error is None
    assert fakes.calls == ["media", "export"]


def test_from_verify_after_seal_explains_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _Fakes(tmp_path)
    fakes.install(monkeypatch)
    spec = _spec(tmp_path)
    first = pipeline.run_build(spec, pipeline.Options(build_root=tmp_path / "build"), _events()[1])
    assert first.build_dir is not None
    (first.build_dir / "build-key").unlink()  # what sealing does
    out = pipeline.run_build(
        spec, pipeline.Options(build_root=tmp_path / "build", from_stage="verify"), _events()[1]
    )
    assert out.error is not None
    assert "build key is gone" in out.error
    assert out.exit_code == 2


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
    from factory.stages.install.monitor import ProgressEvent, StageEvent

    seen: list[tuple[float | None, float | None, str]] = []
    runner = pipeline.Runner(
        _spec(tmp_path),
        pipeline.Options(),
        _events()[1],
        lambda spec, stage, done, total, detail: seen.append((done, total, detail)),
    )
    runner._install_progress(StageEvent("Fetching kickstart from http://10.0.2.2:4567/s3cr3tT0ken/ks.cfg"))
    runner._install_progress(ProgressEvent("openssh-server", 3, 128))
    assert seen == [
        (None, None, "Fetching kickstart from http://10.0.2.2:4567/…"),
        (3, 128, "installing openssh-server"),
    ]
    assert "s3cr3t" not in repr(seen)
