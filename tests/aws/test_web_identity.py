"""Web identity (OIDC) credentials against moto's STS: role assumed with the token, refreshed by botocore
itself with the token read again, the token never in a log line, and a promotion through such accounts."""

from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials

from factory.errors import EXIT_AWS, AwsError
from factory.spec import Spec, WebIdentity
from factory.targets.aws.session import AwsSettings, GithubActionsTokenLoader, open_account

pytestmark = pytest.mark.aws

ROLE = "arn:aws:iam::333333333333:role/image-factory-promote"
# Shaped like a JWT (header.payload.signature); moto does not check the signature, AWS would.
TOKEN_1 = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmV4YW1wbGUvaW1hZ2VzOnJlZjpyZWZzL2hlYWRzL21haW4ifQ.c2lnLW9uZQ"
TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmV4YW1wbGUvaW1hZ2VzOnJlZjpyZWZzL2hlYWRzL21haW4ifQ.c2lnLXR3bw"


class StsCalls:
    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []

    def hook(self, core: Any) -> None:
        core.register("provide-client-params.sts.AssumeRoleWithWebIdentity", self._seen)

    def _seen(self, params: dict[str, Any], **_: Any) -> None:
        self.params.append(dict(params))


@pytest.fixture
def settings(aws_files: AwsSettings, tmp_path: Path) -> AwsSettings:
    # An empty config file: a web identity account must not need a profile of its name.
    empty = tmp_path / "empty-config"
    empty.write_text("")
    return dataclasses.replace(aws_files, config_file=empty, credentials_file=empty)


def test_web_identity_assumes_the_role_and_refreshes_with_a_fresh_token(
    tmp_path: Path, settings: AwsSettings
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN_1 + "\n")
    calls = StsCalls()
    # 900 s is inside botocore's 15-minute refresh window: every use is "about to expire", as the
    # credentials of an hour-long copy wait are at its end.
    wid = WebIdentity(role_arn=ROLE, token_file=token, duration_seconds=900, session_name="ci-run-42")
    account = open_account(
        "images-prod", dataclasses.replace(settings, session_hook=calls.hook), web_identity=wid
    )
    assert account.account_id("us-east-1") == "333333333333"
    assert calls.params[0]["RoleArn"] == ROLE
    assert calls.params[0]["WebIdentityToken"] == TOKEN_1
    assert calls.params[0]["RoleSessionName"] == "ci-run-42"
    assert calls.params[0]["DurationSeconds"] == 900

    creds = account.session.get_credentials()
    assert isinstance(creds, RefreshableCredentials)
    first = creds.get_frozen_credentials().access_key
    token.write_text(TOKEN_2)  # the issuer rotated the token on disk
    before = len(calls.params)
    second = creds.get_frozen_credentials().access_key
    # No manual assume-role anywhere: the fetcher called STS again, with the token read anew.
    assert len(calls.params) == before + 1
    assert calls.params[-1]["WebIdentityToken"] == TOKEN_2
    assert second != first
    assert account.ec2("eu-west-1").describe_images(Owners=["self"])["Images"] == []


def test_long_session_is_not_refreshed_early(tmp_path: Path, settings: AwsSettings) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN_1)
    calls = StsCalls()
    wid = WebIdentity(role_arn=ROLE, token_file=token, duration_seconds=7200)
    account = open_account("prod", dataclasses.replace(settings, session_hook=calls.hook), web_identity=wid)
    for _ in range(3):
        account.account_id("us-east-1")
    # Two hours: longer than a chained role session may last, and one STS call for all of it.
    assert [p["DurationSeconds"] for p in calls.params] == [7200]


def test_token_never_logged_even_at_debug(
    tmp_path: Path, settings: AwsSettings, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN_1)
    wid = WebIdentity(role_arn=ROLE, token_file=token, duration_seconds=900)
    with caplog.at_level(logging.DEBUG):
        account = open_account("prod", settings, web_identity=wid)
        account.account_id("us-east-1")
        secret = account.session.get_credentials().get_frozen_credentials().secret_key
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "sts" in text.lower()  # botocore did log at DEBUG: the check below looked at real output
    assert TOKEN_1 not in text
    assert secret not in text


def test_missing_token_file_is_an_aws_error_naming_the_file(tmp_path: Path, settings: AwsSettings) -> None:
    missing = tmp_path / "no-such-token"
    wid = WebIdentity(role_arn=ROLE, token_file=missing)
    account = open_account("prod", settings, web_identity=wid)
    with pytest.raises(AwsError) as info:
        account.account_id("us-east-1")
    assert str(missing) in info.value.message
    assert info.value.exit_code == EXIT_AWS


class _TokenEndpoint(http.server.BaseHTTPRequestHandler):
    """GitHub Actions' OIDC token endpoint as the runner exposes it: bearer-authenticated, ?audience=."""

    issued: list[str] = []  # noqa: RUF012 - shared by the one test that starts it

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer job-request-token":
            self.send_error(401)
            return
        audience = self.path.split("audience=", 1)[1]
        value = TOKEN_1 if not self.issued else TOKEN_2
        self.issued.append(audience)
        body = json.dumps({"value": value}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    _TokenEndpoint.issued = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
    server.shutdown()
    server.server_close()


def test_github_actions_source_asks_for_a_new_token_at_every_refresh(
    settings: AwsSettings, token_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", token_endpoint)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "job-request-token")
    calls = StsCalls()
    wid = WebIdentity.model_validate(
        {"role_arn": ROLE, "token_from": "github-actions", "duration_seconds": 900}
    )
    account = open_account("prod", dataclasses.replace(settings, session_hook=calls.hook), web_identity=wid)
    assert account.account_id("us-east-1") == "333333333333"
    account.session.get_credentials().get_frozen_credentials()
    assert [p["WebIdentityToken"] for p in calls.params] == [TOKEN_1, TOKEN_2]
    assert _TokenEndpoint.issued == ["sts.amazonaws.com", "sts.amazonaws.com"]


def test_github_actions_source_outside_a_job_says_what_is_missing() -> None:
    with pytest.raises(AwsError) as info:
        GithubActionsTokenLoader("sts.amazonaws.com", environ={})()
    assert "id-token: write" in info.value.message


def _spec(tmp_path: Path, **aws: Any) -> Spec:
    ks = tmp_path / "t.ks"
    ks.write_text("text\n")
    return Spec.model_validate(
        {
            "name": "t",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": str(ks)},
            "aws": {"source_profile": "build", "source_region": "us-east-1", **aws},
            "source": tmp_path / "spec.yaml",
        }
    )


def test_spec_names_web_identity_per_target_and_for_the_source(tmp_path: Path) -> None:
    wid = {"role_arn": ROLE, "token_from": "github-actions"}
    spec = _spec(
        tmp_path,
        source_web_identity=wid,
        targets=[
            {"profile": "prod", "regions": {"us-east-1": "alias/k"}, "web_identity": wid},
            {"profile": "staging", "regions": {"us-east-1": "alias/k"}},
        ],
    )
    assert spec.aws is not None
    assert spec.aws.web_identity_for("build") == WebIdentity.model_validate(wid)
    assert spec.aws.web_identity_for("prod") == WebIdentity.model_validate(wid)
    assert spec.aws.web_identity_for("staging") is None
