"""Three accounts, each a role profile, against the extended moto server (factory.targets.aws.motoserver).

First the server's own rule (AWS's): another account may copy an AMI only when the AMI's launch permission
and its snapshots' createVolumePermission include it. Then the promotion's share step is exercised for
real, including a kill mid-promotion and a re-run; and the role assumption goes where `aws.endpoint_url`
says (every request is recorded, and a proxy stands for the outside world).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from factory.errors import EXIT_AWS, AwsError
from factory.targets.aws import motoserver
from factory.targets.aws.promote import promote
from factory.targets.aws.session import Account, AwsSettings, open_account
from tests.aws.conftest import (
    ACCOUNTS,
    FAST,
    SOURCE,
    TARGETS,
    OutsideWorld,
    RawBody,
    Recorder,
    assert_resumed_without_duplicates,
    kill_after_first_copy,
    make_build,
    make_keys,
    make_spec,
)

pytestmark = pytest.mark.aws


def _source_ami(account: Account) -> tuple[str, list[str]]:
    """An AMI in `account` (us-east-1) and the snapshots backing it."""
    ec2 = account.ec2("us-east-1")
    volume = ec2.create_volume(Size=1, AvailabilityZone="us-east-1a")["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
    ami = ec2.register_image(
        Name="shared-source",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    return ami, [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"]]


def _copy(account: Account, ami: str) -> str:
    return account.ec2("eu-west-1").copy_image(SourceImageId=ami, SourceRegion="us-east-1", Name="copy")[
        "ImageId"
    ]


def _share(owner: Account, ami: str, snapshots: list[str], to: str, *, launch: bool, volumes: bool) -> None:
    ec2 = owner.ec2("us-east-1")
    if launch:
        ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": to}]})
    if volumes:
        for snap in snapshots:
            ec2.modify_snapshot_attribute(
                SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=[to]
            )


# -- the server extension itself ---------------------------------------------------------------------


def test_extension_copy_without_launch_permission_is_not_found(role_accounts: AwsSettings) -> None:
    owner, other = open_account(SOURCE, role_accounts), open_account("images-prod", role_accounts)
    ami, snaps = _source_ami(owner)
    _share(owner, ami, snaps, ACCOUNTS["images-prod"], launch=False, volumes=True)
    with pytest.raises(ClientError) as info:
        _copy(other, ami)
    assert info.value.response["Error"]["Code"] == "InvalidAMIID.NotFound"
    assert ami in info.value.response["Error"]["Message"]


def test_extension_copy_without_snapshot_permission_is_denied_storage(role_accounts: AwsSettings) -> None:
    owner, other = open_account(SOURCE, role_accounts), open_account("images-prod", role_accounts)
    ami, snaps = _source_ami(owner)
    _share(owner, ami, snaps, ACCOUNTS["images-prod"], launch=True, volumes=False)
    with pytest.raises(ClientError) as info:
        _copy(other, ami)
    assert info.value.response["Error"]["Code"] == "InvalidRequest"
    assert info.value.response["Error"]["Message"] == motoserver.STORAGE_DENIED


def test_extension_permissions_for_another_account_do_not_count(role_accounts: AwsSettings) -> None:
    owner, other = open_account(SOURCE, role_accounts), open_account("images-prod", role_accounts)
    ami, snaps = _source_ami(owner)
    _share(owner, ami, snaps, ACCOUNTS["images-staging"], launch=True, volumes=True)
    with pytest.raises(ClientError, match=r"InvalidAMIID\.NotFound"):
        _copy(other, ami)


def test_extension_copy_with_both_permissions_lands_in_the_callers_account(
    role_accounts: AwsSettings,
) -> None:
    owner, other = open_account(SOURCE, role_accounts), open_account("images-prod", role_accounts)
    ami, snaps = _source_ami(owner)
    _share(owner, ami, snaps, ACCOUNTS["images-prod"], launch=True, volumes=True)
    copy = _copy(other, ami)
    image = other.ec2("eu-west-1").describe_images(ImageIds=[copy])["Images"][0]
    assert image["OwnerId"] == ACCOUNTS["images-prod"]
    assert image["Name"] == "copy"
    # Nothing appeared in the owner's account.
    assert [i["ImageId"] for i in owner.ec2("eu-west-1").describe_images(Owners=["self"])["Images"]] == []


def test_extension_create_grant_allowed_by_default_policy(role_accounts: AwsSettings) -> None:
    kms = open_account("images-prod", role_accounts).kms("us-east-1")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    grant = kms.create_grant(
        KeyId=key, GranteePrincipal=f"arn:aws:iam::{ACCOUNTS['images-staging']}:root", Operations=["Decrypt"]
    )
    assert [g["GrantId"] for g in kms.list_grants(KeyId=key)["Grants"]] == [grant["GrantId"]]


def test_extension_create_grant_denied_by_explicit_deny(role_accounts: AwsSettings) -> None:
    kms = open_account("images-prod", role_accounts).kms("us-east-1")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:CreateGrant"], "Resource": "*"},
        ],
    }
    key = kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
    with pytest.raises(ClientError) as info:
        kms.create_grant(KeyId=key, GranteePrincipal="arn:aws:iam::333333333333:root", Operations=["Decrypt"])
    assert info.value.response["Error"]["Code"] == "AccessDeniedException"
    assert kms.list_grants(KeyId=key)["Grants"] == []


# -- the promotion across three accounts -------------------------------------------------------------


def _owned(settings: AwsSettings) -> dict[tuple[str, str], list[str]]:
    """Live, non-source AMIs of this spec in each target account/region."""
    found = {}
    for profile, regions in TARGETS.items():
        for region in regions:
            images = open_account(profile, settings).ec2(region).describe_images(Owners=["self"])["Images"]
            found[(profile, region)] = [
                i["ImageId"] for i in images if i["Name"].startswith("testimg-") and i["State"] == "available"
            ]
    return found


def test_three_account_promotion_shares_the_source_then_copies_into_each(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder, outside_world: OutsideWorld
) -> None:
    make_keys(role_accounts)
    spec = make_spec(tmp_path, role_accounts)
    b = make_build(tmp_path)

    result = promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)

    manifest = json.loads(result.manifest.read_text())
    assert manifest["state"] == "complete"
    assert manifest["accounts"] == ACCOUNTS
    assert manifest["source"]["shared_with"] == [ACCOUNTS["images-prod"], ACCOUNTS["images-staging"]]
    # The share step: the AMI's launch permission and every backing snapshot's createVolumePermission.
    launch = recorder.ops("ModifyImageAttribute")[0]
    assert launch["ImageId"] == result.source_ami
    assert {u["UserId"] for u in launch["LaunchPermission"]["Add"]} == {
        ACCOUNTS["images-prod"],
        ACCOUNTS["images-staging"],
    }
    assert all(
        p["UserIds"] == [ACCOUNTS["images-prod"], ACCOUNTS["images-staging"]]
        for p in recorder.ops("ModifySnapshotAttribute")
    )
    # Each copy was made by, and belongs to, its own account.
    for profile, regions in result.amis.items():
        for region, ami in regions.items():
            image = (
                open_account(profile, role_accounts).ec2(region).describe_images(ImageIds=[ami])["Images"][0]
            )
            assert image["OwnerId"] == ACCOUNTS[profile]
    assert {k: len(v) for k, v in _owned(role_accounts).items()} == {
        ("images-prod", "us-east-1"): 1,
        ("images-prod", "eu-west-1"): 1,
        ("images-staging", "us-west-2"): 1,
    }
    # Three role assumptions at least, every request to the local endpoint, none to the outside world.
    assert {p["RoleArn"].split(":")[4] for p in recorder.ops("AssumeRole")} == set(ACCOUNTS.values())
    assert recorder.urls and all(u.startswith(role_accounts.endpoint_url or "-") for u in recorder.urls)
    assert outside_world.seen == []


def _fake_ok(request: Any, **_: Any) -> AWSResponse:
    body = b'<?xml version="1.0"?><Response><requestId>x</requestId><return>true</return></Response>'
    return AWSResponse(request.url, 200, {"content-type": "text/xml"}, RawBody(body))


def test_promotion_whose_share_step_never_reached_aws_fails_at_copy(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    """The share requests answered "ok" without reaching the server: the copies are refused as AWS would."""
    make_keys(role_accounts)
    spec = make_spec(tmp_path, role_accounts)
    b = make_build(tmp_path)
    recorder.extra.append(lambda core: core.register("before-send.ec2.ModifyImageAttribute", _fake_ok))
    recorder.extra.append(lambda core: core.register("before-send.ec2.ModifySnapshotAttribute", _fake_ok))
    with pytest.raises(AwsError, match=r"InvalidAMIID\.NotFound") as info:
        promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)
    assert info.value.exit_code == EXIT_AWS
    assert json.loads((b.build.path / "promotion.json").read_text())["state"] == "failed"


def test_three_account_promotion_killed_mid_copy_then_rerun_resumes_without_duplicates(
    tmp_path: Path, role_accounts: AwsSettings, recorder: Recorder
) -> None:
    make_keys(role_accounts)
    spec = make_spec(tmp_path, role_accounts)
    b = make_build(tmp_path)
    kill_after_first_copy(tmp_path, role_accounts, spec, b)
    manifest = json.loads((b.build.path / "promotion.json").read_text())
    assert manifest["state"] == "running"
    assert manifest["source"]["shared_with"] == [ACCOUNTS["images-prod"], ACCOUNTS["images-staging"]]
    assert sum(len(v) for v in _owned(role_accounts).values()) == 1  # the one copy the killed run made

    result = promote(spec, b.build, b.raw, b.sha256, settings=role_accounts, tuning=FAST)

    assert_resumed_without_duplicates(_owned(role_accounts), result, recorder, result.manifest)
    # The source was retired only now, in its own account.
    src = open_account(SOURCE, role_accounts).ec2("us-east-1")
    assert result.source_ami not in {i["ImageId"] for i in src.describe_images(Owners=["self"])["Images"]}
