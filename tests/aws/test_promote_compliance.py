"""Promotion of a spec with a compliance section (local moto server): the scan's verdict gates the upload
and its result lands on every AMI as tags."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import VerifyError
from factory.spec import Compliance, Spec
from factory.stages.compliance import compliance
from factory.targets.aws.promote import promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import FAST, Built, Recorder, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws

PROFILE = "xccdf_org.imagefactory_profile_testbed"
SEALED = "s" * 64  # the sealed sha256 make_build records


def _spec(tmp_path: Path, settings: AwsSettings) -> Spec:
    return make_spec(tmp_path, settings).model_copy(update={"compliance": Compliance(profile=PROFILE)})


def _record_scan(spec: Spec, built: Built, *, passed: bool) -> None:
    """The compliance stage as `compliance.gate` records it (the scan itself: tests/unit/test_compliance)."""
    result = {
        "passed": passed,
        "profile": PROFILE,
        "benchmark": "xccdf_org.imagefactory_benchmark_testbed",
        "datastream_version": "1.0",
        "image_sha256": SEALED,
        "counts": {"passed": 2, "failed": 0 if passed else 1, "waived": 1 if passed else 0, "other": 0},
        "report_sha256": "r" * 64,
    }
    built.build.record_stage(
        compliance.STAGE,
        "ok" if passed else "failed",
        result=result,
        inputs=compliance.stage_inputs(spec, SEALED),
    )


def test_amis_carry_the_compliance_result(tmp_path: Path, hooked: AwsSettings, recorder: Recorder) -> None:
    make_keys(hooked)
    spec = _spec(tmp_path, hooked)
    built = make_build(tmp_path)
    _record_scan(spec, built, passed=True)
    result = promote(spec, built.build, built.raw, built.sha256, settings=hooked, tuning=FAST)
    for profile, regions in result.amis.items():
        for region, ami in regions.items():
            image = open_account(profile, hooked).ec2(region).describe_images(ImageIds=[ami])["Images"][0]
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            assert tags["factory:compliance-profile"] == PROFILE
            assert tags["factory:compliance-passed"] == "2"
            assert tags["factory:compliance-failed"] == "0"
            assert tags["factory:compliance-waived"] == "1"
            assert tags["factory:compliance-report-sha256"] == "r" * 64
            assert tags["factory:compliance-image-sha256"] == SEALED


def test_failed_scan_stops_promotion_before_any_upload(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = _spec(tmp_path, hooked)
    built = make_build(tmp_path)
    _record_scan(spec, built, passed=False)
    with pytest.raises(VerifyError, match="compliance scan has not passed"):
        promote(spec, built.build, built.raw, built.sha256, settings=hooked, tuning=FAST)
    assert not recorder.ops("StartSnapshot")


def test_missing_scan_stops_promotion(tmp_path: Path, hooked: AwsSettings, recorder: Recorder) -> None:
    make_keys(hooked)
    built = make_build(tmp_path)
    with pytest.raises(VerifyError, match="not run"):
        promote(_spec(tmp_path, hooked), built.build, built.raw, built.sha256, settings=hooked, tuning=FAST)
    assert not recorder.ops("StartSnapshot")
