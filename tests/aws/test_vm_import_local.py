"""vm-import against moto: the S3 multipart upload is real; moto answers ImportSnapshot with HTTP 500
"not implemented", so the test asserts on the request sent and that the 500 becomes a clear AwsError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.errors import AwsError
from factory.targets.aws.local import local_aws
from factory.targets.aws.promote import promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import FAST, SOURCE, Recorder, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws


def test_vm_import_uploads_then_fails_clearly(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    open_account(SOURCE, hooked).s3("us-east-1").create_bucket(Bucket="images-import")
    spec = make_spec(tmp_path, hooked, upload="vm-import", s3_bucket="images-import")
    b = make_build(tmp_path)
    with pytest.raises(AwsError, match=r"ImportSnapshot of s3://images-import/testimg/.*/disk.raw failed"):
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    sent = recorder.ops("ImportSnapshot")[0]
    assert sent["DiskContainer"] == {
        "Format": "RAW",
        "UserBucket": {"S3Bucket": "images-import", "S3Key": f"testimg/{b.build.build_id}/disk.raw"},
    }
    head = (
        open_account(SOURCE, hooked)
        .s3("us-east-1")
        .head_object(Bucket="images-import", Key=sent["DiskContainer"]["UserBucket"]["S3Key"])
    )
    assert head["ContentLength"] == b.raw.stat().st_size
    assert json.loads((b.build.path / "promotion.json").read_text())["state"] == "failed"


def test_embedded_local_aws_promotes_and_tears_down(tmp_path: Path, aws_files: AwsSettings) -> None:
    """`endpoint_url: local`: moto started for the run, profiles and KMS aliases made, stopped after."""
    spec = make_spec(tmp_path, aws_files, endpoint_url="local")
    b = make_build(tmp_path)
    with local_aws(spec) as local:
        assert set(local.kms_keys) == {
            ("images-prod", "us-east-1"),
            ("images-prod", "eu-west-1"),
            ("images-staging", "us-west-2"),
        }
        folder = local.config_file.parent
        result = promote(spec, b.build, b.raw, b.sha256, settings=local.settings, tuning=FAST)
    assert set(result.amis) == {"images-prod", "images-staging"}
    assert not folder.exists()  # the temporary profiles are gone with the server
