"""Bad input and faults of the promotion, each its own case: a clear error, nothing in use deleted, and a
re-run completes. Faults are injected with botocore event hooks on the sessions promote() opens."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from factory.errors import EXIT_AWS, AwsError, VerifyError
from factory.targets.aws.promote import promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import (
    FAST,
    TARGETS,
    RawBody,
    Recorder,
    assert_resumed_without_duplicates,
    kill_after_first_copy,
    make_build,
    make_keys,
    make_spec,
)

pytestmark = pytest.mark.aws


def error_response(request: Any, status: int = 500, code: str = "InternalServerException") -> AWSResponse:
    body = json.dumps({"message": "injected fault"}).encode()
    headers = {"x-amzn-ErrorType": code, "content-type": "application/json"}
    return AWSResponse(request.url, status, headers, RawBody(body))


def live_copies(settings: AwsSettings, name_prefix: str = "testimg-") -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for profile, regions in TARGETS.items():
        for region in regions:
            images = open_account(profile, settings).ec2(region).describe_images(Owners=["self"])["Images"]
            found[(profile, region)] = [
                i["ImageId"]
                for i in images
                if i["Name"].startswith(name_prefix) and not i["Name"].endswith("-source")
            ]
    return found


def test_unknown_profile(tmp_path: Path, hooked: AwsSettings, recorder: Recorder) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked, source_profile="no-such-profile")
    b = make_build(tmp_path)
    with pytest.raises(AwsError, match=r"'no-such-profile' not found in .*config") as info:
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert info.value.exit_code == EXIT_AWS
    assert recorder.ops("StartSnapshot") == []


def test_kms_key_missing_in_a_region(tmp_path: Path, hooked: AwsSettings, recorder: Recorder) -> None:
    # Keys everywhere but images-staging/us-west-2.
    make_keys(hooked, {"images-prod": TARGETS["images-prod"]})
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    with pytest.raises(
        AwsError, match=r"profile images-staging region us-west-2: KMS key alias/staging does not exist"
    ):
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert recorder.ops("StartSnapshot") == []


def test_unverified_image_is_refused_before_any_request(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path, verified=False)
    recorder.calls.clear()  # the setup's own KMS calls
    with pytest.raises(VerifyError, match="refusing to promote"):
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert recorder.ops("StartSnapshot") == []
    assert recorder.calls == []


def test_block_write_fails_once_then_is_retried(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    lock = threading.Lock()
    sent = {"n": 0, "failed": 0}

    def third_put_fails(request: Any, **_: Any) -> AWSResponse | None:
        with lock:
            sent["n"] += 1
            if sent["n"] == 3:
                sent["failed"] += 1
                return error_response(request, 503, "ServiceUnavailable")
        return None

    recorder.extra.append(lambda core: core.register("before-send.ebs.PutSnapshotBlock", third_put_fails))
    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert sent["failed"] == 1
    assert sent["n"] == 5  # four data blocks, one of them sent twice
    assert json.loads(result.manifest.read_text())["state"] == "complete"


def test_upload_fails_half_way_then_rerun_completes(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    broken = {"on": True}

    def block_40_always_fails(request: Any, **_: Any) -> AWSResponse | None:
        if broken["on"] and request.url.endswith("/blocks/40"):
            return error_response(request)
        return None

    recorder.extra.append(
        lambda core: core.register("before-send.ebs.PutSnapshotBlock", block_40_always_fails)
    )
    with pytest.raises(AwsError, match=r"writing block 40 failed after 2 attempt"):
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    manifest = json.loads((b.build.path / "promotion.json").read_text())
    assert manifest["state"] == "failed"
    assert manifest["source"]["snapshot_state"] == "pending"
    half_written = manifest["source"]["snapshot_ids"][0]
    assert recorder.ops("CopyImage") == []

    broken["on"] = False
    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert json.loads(result.manifest.read_text())["state"] == "complete"
    assert all(len(v) == 1 for v in live_copies(hooked).values())
    # The half-written snapshot was replaced, not trusted.
    assert recorder.ops("DeleteSnapshot")[0]["SnapshotId"] == half_written


def test_copy_never_available_times_out_and_deletes_nothing(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    """moto's copies are available at once: an after-call hook on DescribeImages rewrites the state of the
    eu-west-1 copy to "pending", so it never becomes available before the 1 s copy_timeout."""
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked, copy_timeout=1)
    b = make_build(tmp_path)
    stuck = {"on": True}
    stuck_ids: set[str] = set()

    def eu_copy_pending(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            if stuck["on"] and not image["Name"].endswith("-source") and image["ImageId"] in stuck_ids:
                image["State"] = "pending"

    # The copy made in eu-west-1, by the region of the client that sent its CopyImage.
    def record_copy(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("client_region") == "eu-west-1":
            stuck_ids.add(parsed["ImageId"])

    recorder.extra.append(lambda core: core.register("after-call.ec2.DescribeImages", eu_copy_pending))
    recorder.extra.append(lambda core: core.register("after-call.ec2.CopyImage", record_copy))
    with pytest.raises(
        AwsError,
        match=r"copies not available within aws.copy_timeout 1 s: "
        r"ami-\w+ \(profile images-prod region eu-west-1\); nothing was deleted",
    ) as info:
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert info.value.exit_code == EXIT_AWS
    assert recorder.ops("DeregisterImage") == []
    assert recorder.ops("DeleteSnapshot") == []
    manifest = json.loads((b.build.path / "promotion.json").read_text())
    assert manifest["state"] == "failed"
    assert manifest["copies"]["images-prod"]["eu-west-1"]["state"] == "pending"

    stuck["on"] = False
    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    assert json.loads(result.manifest.read_text())["state"] == "complete"
    assert all(len(v) == 1 for v in live_copies(hooked).values())


def test_killed_during_promotion_then_rerun_completes_without_duplicates(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    kill_after_first_copy(tmp_path, hooked, spec, b)
    manifest = json.loads((b.build.path / "promotion.json").read_text())
    assert manifest["state"] == "running"
    assert sum(len(v) for v in live_copies(hooked).values()) == 1  # the one copy the killed run made

    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)

    assert_resumed_without_duplicates(live_copies(hooked), result, recorder, result.manifest)
