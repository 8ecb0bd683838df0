"""Profiles: role_arn + source_profile against moto's STS, refreshing credentials, unknown profiles, where
the role assumption is sent, and what a credential failure shows on the terminal."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.credentials import RefreshableCredentials

from factory.errors import EXIT_AWS, AwsError
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import (
    ACCOUNTS,
    SOURCE,
    OutsideWorld,
    Recorder,
    make_build,
    make_spec,
    write_role_profiles,
)

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "how", ["aws.endpoint_url", "profile services section", "AWS_ENDPOINT_URL_STS"], ids=lambda h: h
)
def test_role_assumption_goes_where_the_endpoint_settings_say(
    how: str,
    *,
    tmp_path: Path,
    moto_url: str,
    aws_files: AwsSettings,
    recorder: Recorder,
    outside_world: OutsideWorld,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No request, the AssumeRole included, leaves 127.0.0.1 whichever way the endpoint is given."""
    if how == "aws.endpoint_url":
        config, creds = write_role_profiles(tmp_path / "p")
        endpoint: str | None = moto_url
    elif how == "profile services section":
        services = f"[services local-moto]\nsts =\n  endpoint_url = {moto_url}\n"
        config, creds = write_role_profiles(
            tmp_path / "p", profile_lines="services = local-moto\n", extra_config=services
        )
        endpoint = None
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)
        config, creds = write_role_profiles(tmp_path / "p")
        endpoint = None
    settings = AwsSettings(
        endpoint_url=endpoint,
        config_file=config,
        credentials_file=creds,
        max_attempts=2,
        session_hook=recorder.hook,
    )
    assert open_account("images-prod", settings).account_id("eu-west-1") == ACCOUNTS["images-prod"]
    assert [p["RoleArn"] for p in recorder.ops("AssumeRole")] == [
        f"arn:aws:iam::{ACCOUNTS['images-prod']}:role/image-promote"
    ]
    assert len(recorder.urls) == 2  # AssumeRole, then GetCallerIdentity with the role's credentials
    assert all(u.startswith(moto_url) for u in recorder.urls), recorder.urls
    assert outside_world.seen == []


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def test_credential_failure_prints_one_clean_line_and_logs_the_library_traceback(
    tmp_path: Path, aws_files: AwsSettings
) -> None:
    """STS unreachable for a role profile: botocore logs "Refreshing temporary credentials failed" with a
    traceback; the terminal shows only the factory's one-line error (exit 8), the build's log file the rest,
    and --debug shows it on the terminal too."""
    dead = f"http://127.0.0.1:{_free_port()}"
    config, creds = write_role_profiles(tmp_path / "p")
    spec = make_spec(tmp_path, dataclasses.replace(aws_files, endpoint_url=dead))
    spec_file = tmp_path / "testimg.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude={"source"})))
    b = make_build(tmp_path)
    env = {
        **os.environ,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(creds),
        "AWS_MAX_ATTEMPTS": "1",
    }
    env.pop("FACTORY_DEBUG", None)

    proc = _cli("promote", str(b.build.path), "--spec", str(spec_file), env=env, cwd=tmp_path)

    assert proc.returncode == EXIT_AWS, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: profile {SOURCE}: cannot get credentials or identity: ")
    assert "Traceback" not in proc.stderr
    assert "botocore" not in proc.stderr
    log = (b.build.path / "factory.log").read_text()
    assert "WARNING botocore.credentials: Refreshing temporary credentials failed" in log
    assert "Traceback (most recent call last)" in log
    assert "SecretAccessKey" not in log and "base-secret" not in log

    debug = _cli("--debug", "promote", str(b.build.path), "--spec", str(spec_file), env=env, cwd=tmp_path)
    assert debug.returncode != 0
    assert "Refreshing temporary credentials failed" in debug.stderr
