"""Promotion against a real local AWS API (moto server): the whole path, re-runs, keep, cleanup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.targets.aws.promote import _age, cleanup, promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import FAST, SOURCE, TARGETS, Recorder, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws


def test_promote_end_to_end(tmp_path: Path, hooked: AwsSettings, recorder: Recorder) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)

    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)

    assert set(result.amis) == set(TARGETS)
    assert {p: set(r) for p, r in result.amis.items()} == {p: set(r) for p, r in TARGETS.items()}
    # Only blocks with data were sent: 2 + 1 + 1 blocks of 512 KiB (the zero block and holes were not).
    puts = recorder.ops("PutSnapshotBlock")
    assert sorted(p["BlockIndex"] for p in puts) == [0, 1, 40, 126]
    start = recorder.ops("RegisterImage")[0]
    assert start["Architecture"] == "x86_64"
    assert start["BlockDeviceMappings"][0]["DeviceName"] == start["RootDeviceName"]
    # moto never shows copies as encrypted: the requests prove each copy asked for it, with its region's key.
    copies = recorder.ops("CopyImage")
    assert len(copies) == 3
    for c in copies:
        assert c["Encrypted"] is True
        assert c["KmsKeyId"].startswith("arn:aws:kms:")
    assert len({c["ClientToken"] for c in copies}) == 3
    for profile, regions in result.amis.items():
        for region, ami in regions.items():
            account = open_account(profile, hooked)
            image = account.ec2(region).describe_images(ImageIds=[ami])["Images"][0]
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            assert tags["factory:build-id"] == b.build.build_id
            assert tags["factory:image-sha256"] == b.sha256
            assert tags["factory:kickstart-sha256"] == "k" * 64
            value = account.ssm(region).get_parameter(Name="/images/testimg/latest")["Parameter"]["Value"]
            assert value == ami
    # The unencrypted source is gone once the copies exist.
    src_ec2 = open_account(SOURCE, hooked).ec2("us-east-1")
    assert result.source_ami in result.retired
    assert recorder.ops("DeregisterImage")[0]["ImageId"] == result.source_ami
    assert not [
        i for i in src_ec2.describe_images(Owners=["self"])["Images"] if i["ImageId"] == result.source_ami
    ]
    manifest = json.loads(result.manifest.read_text())
    assert manifest["state"] == "complete"
    assert manifest["source"]["ami_state"] == "deregistered"


def test_rerun_of_complete_promotion_makes_nothing_new(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    first = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    n_copies, n_starts = len(recorder.ops("CopyImage")), len(recorder.ops("StartSnapshot"))

    second = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)

    assert second.amis == first.amis
    assert len(recorder.ops("CopyImage")) == n_copies
    assert len(recorder.ops("StartSnapshot")) == n_starts


def test_keep_retires_oldest_but_never_what_ssm_points_to(tmp_path: Path, hooked: AwsSettings) -> None:
    make_keys(hooked)
    spec = make_spec(
        tmp_path, hooked, keep=2, targets=[{"profile": "images-prod", "regions": {"us-east-1": "alias/prod"}}]
    )
    results = []
    for n in range(3):
        b = make_build(tmp_path / str(n), build_id=f"2026010{n + 1}T000000Z-abcd")
        results.append(promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST))
    ec2 = open_account("images-prod", hooked).ec2("us-east-1")
    live = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"] if i["State"] == "available"}
    amis = [r.amis["images-prod"]["us-east-1"] for r in results]
    # keep=2: the newest two stay, the oldest went with the third promotion.
    assert live == {amis[1], amis[2]}
    assert amis[0] in results[2].retired


def test_cleanup_removes_build_leftovers_but_not_what_ssm_points_to(
    tmp_path: Path, hooked: AwsSettings
) -> None:
    make_keys(hooked)
    spec = make_spec(tmp_path, hooked)
    b = make_build(tmp_path)
    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)
    prod = open_account("images-prod", hooked)
    # Point eu-west-1's parameter elsewhere: that copy is no longer in use and may go; the rest are in use.
    prod.ssm("eu-west-1").put_parameter(
        Name="/images/testimg/latest", Value="ami-12345678", Type="String", Overwrite=True
    )

    cres = cleanup(spec, b.build, settings=hooked)

    assert cres.removed_amis == (result.amis["images-prod"]["eu-west-1"],)
    assert set(cres.kept) == {
        result.amis["images-prod"]["us-east-1"],
        result.amis["images-staging"]["us-west-2"],
    }
    assert json.loads(cres.manifest.read_text())["state"] == "cleaned"


def test_age_orders_a_creation_date_tie_by_build_time() -> None:
    # Two promotions within one second share a CreationDate (moto stamps whole seconds):
    # the build id, which starts with the UTC build time, decides which one is older.
    stamp = "2026-01-03T00:00:00.000Z"
    images = [
        {
            "ImageId": "ami-new",
            "CreationDate": stamp,
            "Tags": [{"Key": "factory:build-id", "Value": "20260102T000000Z-b"}],
        },
        {
            "ImageId": "ami-old",
            "CreationDate": stamp,
            "Tags": [{"Key": "factory:build-id", "Value": "20260101T000000Z-a"}],
        },
        {"ImageId": "ami-untagged", "CreationDate": "2026-01-01T00:00:00.000Z"},
    ]
    newest_first = [i["ImageId"] for i in sorted(images, key=_age, reverse=True)]
    assert newest_first == ["ami-new", "ami-old", "ami-untagged"]
