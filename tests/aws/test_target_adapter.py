"""The AWS promotion reached through the target interface (factory.targets.aws), against moto."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import VerifyError
from factory.targets import runner
from factory.targets.aws.adapter import AwsTarget
from factory.targets.aws.session import AwsSettings
from factory.targets.base import Target, TargetContext
from tests.aws.conftest import FAST, TARGETS, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws


def test_publish_status_through_the_interface(tmp_path: Path, aws_files: AwsSettings) -> None:
    make_keys(aws_files)
    spec = make_spec(tmp_path, aws_files)
    built = make_build(tmp_path)
    target = AwsTarget(settings=aws_files, tuning=FAST)
    assert isinstance(target, Target)
    ctx = TargetContext(spec=spec, build=built.build)
    pub = runner.publish(ctx, runner.select(ctx, ["aws"]), instances={"aws": target})["aws"]
    expected = sorted(f"{p}/{r}" for p, regions in TARGETS.items() for r in regions)
    assert sorted(i.location for i in pub.images) == expected
    assert all(i.id.startswith("ami-") for i in pub.images)
    amis = pub.stats["amis"]
    assert {f"{p}/{r}": a for p, regions in amis.items() for r, a in regions.items()} == {
        i.location: i.id for i in pub.images
    }
    assert pub.manifest == built.build.path / "promotion.json"
    status = target.status(ctx)
    assert status.state == "complete"
    assert sorted((i.location, i.id) for i in status.images) == sorted((i.location, i.id) for i in pub.images)


def test_unverified_build_never_reaches_aws(tmp_path: Path, aws_files: AwsSettings) -> None:
    spec = make_spec(tmp_path, aws_files)
    built = make_build(tmp_path, verified=False)
    ctx = TargetContext(spec=spec, build=built.build)
    with pytest.raises(VerifyError):
        runner.publish(ctx, runner.select(ctx, ["aws"]), instances={"aws": AwsTarget(settings=aws_files)})
    assert not (built.build.path / "promotion.json").exists()
