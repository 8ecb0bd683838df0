"""`share_with` of encrypted AMIs: the other accounts must be able to use the region's KMS key, checked (or
granted, with `kms_grants: create`) before anything is uploaded. Against moto's KMS (CreateGrant,
ListGrants, key policies); the extended server refuses CreateGrant under an explicit Deny, as AWS does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from factory.errors import EXIT_AWS, AwsError
from factory.spec import Spec
from factory.targets.aws.kms_access import GRANT_OPERATIONS, account_principal
from factory.targets.aws.promote import promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import FAST, Recorder, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws
PARTNER = "444455556666"
PROD = "images-prod"


def _spec(tmp_path: Path, settings: AwsSettings, mode: str) -> Spec:
    target = {
        "profile": PROD,
        "regions": {"us-east-1": "alias/prod"},
        "share_with": [PARTNER],
        "kms_grants": mode,
    }
    return make_spec(tmp_path, settings, targets=[target])


def _key(settings: AwsSettings) -> tuple[Any, str]:
    kms = open_account(PROD, settings).kms("us-east-1")
    return kms, kms.describe_key(KeyId="alias/prod")["KeyMetadata"]["Arn"]


def _policy(*extra: dict[str, Any]) -> str:
    own = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
        "Action": "kms:*",
        "Resource": "*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [own, *extra]})


def test_check_without_key_access_fails_before_upload_naming_key_account_and_fix(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    _, arn = _key(role_accounts)
    b = make_build(tmp_path)
    spec = _spec(tmp_path, role_accounts, "check")
    with pytest.raises(AwsError) as info:
        promote(
            spec,
            b.build,
            b.raw,
            b.sha256,
            settings=role_accounts,
            tuning=FAST,
        )
    message = info.value.message
    assert f"KMS key {arn} does not let account {PARTNER} use it" in message
    assert "kms_grants: create" in message and "key policy" in message
    assert "\n" not in message
    assert info.value.exit_code == EXIT_AWS
    assert json.loads((b.build.path / "promotion.json").read_text())["state"] == "failed"
    assert recorder.ops("StartSnapshot") == [] and recorder.ops("CreateGrant") == []


def test_check_passes_when_the_key_policy_allows_the_account(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    kms, arn = _key(role_accounts)
    partner = {
        "Effect": "Allow",
        "Principal": {"AWS": [account_principal(PARTNER)]},
        "Action": [
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:CreateGrant",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
        ],
        "Resource": "*",
    }
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=_policy(partner))
    b = make_build(tmp_path)
    result = promote(
        _spec(tmp_path, role_accounts, "check"), b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST
    )
    manifest = json.loads(result.manifest.read_text())
    assert manifest["copies"][PROD]["us-east-1"]["kms_access"] == {PARTNER: "key policy"}
    assert recorder.ops("CreateGrant") == []
    shares = [
        p for p in recorder.ops("ModifyImageAttribute") if p["ImageId"] == result.amis[PROD]["us-east-1"]
    ]
    assert shares[0]["LaunchPermission"]["Add"] == [{"UserId": PARTNER}]


def test_check_passes_with_an_existing_grant(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    kms, arn = _key(role_accounts)
    gid = kms.create_grant(
        KeyId=arn, GranteePrincipal=account_principal(PARTNER), Operations=list(GRANT_OPERATIONS)
    )["GrantId"]
    recorder.calls.clear()
    b = make_build(tmp_path)
    result = promote(
        _spec(tmp_path, role_accounts, "check"), b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST
    )
    assert json.loads(result.manifest.read_text())["copies"][PROD]["us-east-1"]["kms_access"] == {
        PARTNER: f"grant {gid}"
    }
    assert recorder.ops("CreateGrant") == []


def test_grant_missing_an_operation_does_not_count(tmp_path: Path, role_accounts: AwsSettings) -> None:
    make_keys(role_accounts)
    kms, arn = _key(role_accounts)
    kms.create_grant(
        KeyId=arn, GranteePrincipal=account_principal(PARTNER), Operations=["Decrypt", "DescribeKey"]
    )
    b = make_build(tmp_path)
    with pytest.raises(AwsError, match=f"does not let account {PARTNER} use it"):
        promote(
            _spec(tmp_path, role_accounts, "check"),
            b.build,
            b.raw,
            b.sha256,
            settings=role_accounts,
            tuning=FAST,
        )


def test_create_makes_the_grant_once_and_a_rerun_reuses_it(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    kms, arn = _key(role_accounts)
    spec = _spec(tmp_path, role_accounts, "create")
    b = make_build(tmp_path)
    promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)
    grants = kms.list_grants(KeyId=arn)["Grants"]
    assert len(grants) == 1
    assert grants[0]["GranteePrincipal"] == account_principal(PARTNER)
    assert set(grants[0]["Operations"]) == set(GRANT_OPERATIONS)

    promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)
    assert len(kms.list_grants(KeyId=arn)["Grants"]) == 1
    assert len(recorder.ops("CreateGrant")) == 1


def test_create_without_permission_is_a_one_line_error_naming_key_account_and_fix(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    kms, arn = _key(role_accounts)
    deny = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:CreateGrant", "Resource": "*"}
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=_policy(deny))
    b = make_build(tmp_path)
    with pytest.raises(AwsError) as info:
        promote(
            _spec(tmp_path, role_accounts, "create"),
            b.build,
            b.raw,
            b.sha256,
            settings=role_accounts,
            tuning=FAST,
        )
    message = info.value.message
    assert (
        f"not allowed to create a grant on KMS key {arn} for account {PARTNER} (AccessDeniedException)"
        in message
    )
    assert f"allow kms:CreateGrant to profile {PROD} in the key policy" in message
    assert "\n" not in message
    assert info.value.exit_code == EXIT_AWS
    assert recorder.ops("StartSnapshot") == []
    assert kms.list_grants(KeyId=arn)["Grants"] == []


def test_aws_managed_key_cannot_be_shared(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    b = make_build(tmp_path)
    target = {"profile": PROD, "regions": {"us-east-1": "alias/aws/ebs"}, "share_with": [PARTNER]}
    spec = make_spec(tmp_path, role_accounts, targets=[target])
    with pytest.raises(AwsError, match=r"KMS key \S+ is AWS managed and cannot be used by other accounts"):
        promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)
    assert recorder.ops("StartSnapshot") == []
