"""Profiles: role_arn + source_profile against moto's STS, refreshing credentials, unknown profiles."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from factory.aws.session import AwsSettings, open_account
from factory.errors import EXIT_AWS, AwsError

pytestmark = pytest.mark.aws


def role_profile_files(tmp_path: Path, url: str, duration: int = 3600) -> AwsSettings:
    config = tmp_path / "config"
    creds = tmp_path / "credentials"
    config.write_text(
        f"[profile base]\nregion = us-east-1\nendpoint_url = {url}\n\n"
        "[profile deploy]\nregion = us-east-1\n"
        "role_arn = arn:aws:iam::222222222222:role/image-promote\nsource_profile = base\n"
        f"endpoint_url = {url}\n"
        f"duration_seconds = {duration}\n"
    )
    creds.write_text("[base]\naws_access_key_id = AKIABASE0000\naws_secret_access_key = base-secret\n")
    return AwsSettings(endpoint_url=url, config_file=config, credentials_file=creds, max_attempts=2)


def test_role_profile_assumes_role_and_refreshes_before_expiry(
    tmp_path: Path, moto_url: str, aws_files: AwsSettings
) -> None:
    assume_calls: list[dict[str, Any]] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        assume_calls.append(params)

    # 900 s (the shortest AWS allows) is inside botocore's 15-minute refresh window: every use of the
    # credentials is "about to expire", as an hour-long upload's are at its end.
    settings = role_profile_files(tmp_path, moto_url, duration=900)

    settings = dataclasses.replace(
        settings, session_hook=lambda core: core.register("provide-client-params.sts.AssumeRole", count)
    )
    account = open_account("deploy", settings)
    assert account.account_id("us-east-1") == "222222222222"
    creds = account.session.get_credentials()
    assert isinstance(creds, RefreshableCredentials)
    first = creds.get_frozen_credentials().access_key
    before = len(assume_calls)
    assert before >= 1
    assert assume_calls[0]["RoleArn"] == "arn:aws:iam::222222222222:role/image-promote"

    # No manual assume-role anywhere: the provider sends a new AssumeRole on its own.
    second = creds.get_frozen_credentials().access_key
    assert len(assume_calls) == before + 1
    assert second != first
    assert account.account_id("us-east-1") == "222222222222"


@pytest.mark.parametrize("profile", ["no-such-profile", "deploy-typo"], ids=["unknown", "typo"])
def test_unknown_profile_names_profile_and_config_file(tmp_path: Path, moto_url: str, profile: str) -> None:
    settings = role_profile_files(tmp_path, moto_url)
    with pytest.raises(AwsError) as info:
        open_account(profile, settings)
    assert profile in info.value.message
    assert str(settings.config_file) in info.value.message
    assert info.value.exit_code == EXIT_AWS


def test_per_call_timeouts_and_retries_are_configured(tmp_path: Path, moto_url: str) -> None:
    settings = role_profile_files(tmp_path, moto_url)
    client = open_account("base", settings).ec2("eu-west-1")
    assert client.meta.config.connect_timeout == settings.connect_timeout
    assert client.meta.config.read_timeout == settings.read_timeout
    # botocore stores `max_attempts` (retries) as total_max_attempts (retries + the first try).
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.endpoint_url == moto_url
