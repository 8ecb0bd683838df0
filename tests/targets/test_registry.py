"""The target registry and runner: lookup by spec key, the export each target needs, the gate for every
target, and how failures of several targets are reported (exit 9). No service needed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from factory import targets
from factory.errors import (
    EXIT_OPENSTACK,
    EXIT_PUBLISH,
    EXIT_USAGE,
    EXIT_VSPHERE,
    OpenstackError,
    UsageError,
    VerifyError,
    VsphereError,
)
from factory.spec import Spec
from factory.targets import runner
from factory.targets.base import Artifact, Published, Retired, Status, Target, TargetContext
from tests.targets.conftest import ctx_for, gated_build, write_spec


class Failing:
    """A target whose publish raises `error` (what a real target raises on a bad input)."""

    label: ClassVar[str] = "failing"

    def __init__(self, key: str, error: Exception) -> None:
        self.key = key  # type: ignore[misc]
        self.error = error
        self.calls: list[Artifact] = []

    def configured(self, spec: Spec) -> bool:
        return True

    def artifact_format(self, spec: Spec) -> str:
        return "qcow2"

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published:
        self.calls.append(artifact)
        raise self.error

    def status(self, ctx: TargetContext) -> Status:
        return Status(self.key, "new", ())

    def retire(self, ctx: TargetContext, keep: int) -> Retired:
        return Retired(self.key)


def platform_spec(tmp_path: Path, **extra: object) -> Spec:
    return write_spec(
        tmp_path / "spec",
        vsphere={
            "url": "https://vc.example.com/sdk",
            "datacenter": "D",
            "cluster": "C",
            "datastore": "S",
            "network": "N",
        },
        openstack={"clouds": [{"cloud": "x"}]},
        **extra,
    )


def test_every_registered_target_implements_the_interface() -> None:
    for key in targets.REGISTRY:
        target = targets.get(key)
        assert isinstance(target, Target) and target.key == key


def test_unknown_target_key() -> None:
    with pytest.raises(UsageError, match=r"unknown target 'azure' \(known: aws, vsphere, openstack"):
        targets.get("azure")


def test_configured_in_registry_order(tmp_path: Path) -> None:
    assert targets.configured(platform_spec(tmp_path)) == ["vsphere", "openstack"]


def test_missing_export_for_a_target(tmp_path: Path, sealed_disk: Path) -> None:
    spec = platform_spec(tmp_path)
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    # An export stage from before the spec named vSphere: no OVA in it.
    export = build.record["stages"]["export"]
    export["result"]["artifacts"] = [a for a in export["result"]["artifacts"] if a["format"] != "ova"]
    build.save()
    with pytest.raises(
        UsageError, match=r"target vsphere publishes the ova export, which build .* does not have"
    ):
        runner.artifact_for(targets.get("vsphere"), ctx_for(spec, build))


def test_gate_runs_before_every_target(tmp_path: Path, sealed_disk: Path) -> None:
    spec = platform_spec(tmp_path)
    build = gated_build(spec, tmp_path / "build", sealed_disk, verified=False)
    a, b = Failing("vsphere", VsphereError("x")), Failing("openstack", OpenstackError("y"))
    with pytest.raises(VerifyError):
        runner.publish(ctx_for(spec, build), [a, b])
    assert a.calls == [] and b.calls == [], "nothing reaches a target without a passing verification"


def test_one_failure_keeps_its_own_exit_code(tmp_path: Path, sealed_disk: Path) -> None:
    spec = platform_spec(tmp_path)
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(VsphereError) as info:
        runner.publish(ctx_for(spec, build), [Failing("vsphere", VsphereError("datastore 'x' not found"))])
    assert info.value.exit_code == EXIT_VSPHERE


def test_several_failures_are_reported_together(tmp_path: Path, sealed_disk: Path) -> None:
    spec = platform_spec(tmp_path)
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    a = Failing("vsphere", VsphereError("datastore 'x' not found"))
    b = Failing("openstack", OpenstackError("cloud 'y' is not in clouds.yaml"))
    with pytest.raises(Exception) as info:
        runner.publish(ctx_for(spec, build), [a, b])
    assert getattr(info.value, "exit_code", None) == EXIT_PUBLISH
    assert (
        str(info.value)
        == "2 targets failed: vsphere: datastore 'x' not found; openstack: cloud 'y' is not in clouds.yaml"
    )
    assert len(a.calls) == len(b.calls) == 1, "one failing target does not stop the others"
    assert EXIT_OPENSTACK != EXIT_PUBLISH != EXIT_USAGE
