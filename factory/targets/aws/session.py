"""AWS credentials and clients: one boto3 named profile per account, never keys in the environment.

A profile with `role_arn` + `source_profile` gives botocore's AssumeRoleProvider, whose credentials refresh
themselves before they expire: a long upload outlives the one-hour cap on chained role sessions.
A spec's `web_identity` (an OIDC token: a CI job's, EKS's) goes through botocore's
AssumeRoleWithWebIdentity fetcher the same way: refreshed by itself, the token read again at every refresh.

botocore's provider makes its STS client without the endpoint given to our clients, so with
`aws.endpoint_url` set the role assumption would go to the public STS endpoint while everything else goes
to the given one. `open_account` therefore puts an AssumeRoleProvider of the same configuration in its
place whose STS client uses that endpoint. Without `aws.endpoint_url`, botocore's own endpoint settings
(`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, a profile's `endpoint_url` or `services` section) apply to
both, as botocore resolves them for every client it makes. (web-identity and SSO profiles are not
redirected: they are not the profiles this factory documents.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleProvider,
    AssumeRoleWithWebIdentityCredentialFetcher,
    CanonicalNameCredentialSourcer,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
    EnvProvider,
    ProfileProviderBuilder,
)
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.utils import create_nested_client

from factory.errors import AwsError
from factory.spec import Aws, TokenSource, WebIdentity

if TYPE_CHECKING:
    from mypy_boto3_ebs import EBSClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    """Where and how to talk to AWS. `config_file`/`credentials_file` None = botocore's usual lookup."""

    endpoint_url: str | None = None
    config_file: Path | None = None
    credentials_file: Path | None = None
    connect_timeout: float = 10
    read_timeout: float = 120
    # botocore "standard" retries (throttling, 5xx, connection errors), per call.
    max_attempts: int = 5
    # Called with every new botocore session: for event hooks (tests record and fault requests with it).
    session_hook: Callable[[botocore.session.Session], None] | None = None

    def botocore_config(self) -> Config:
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            # Enough pooled connections for the parallel block writers.
            max_pool_connections=32,
        )

    def describe_config_file(self) -> str:
        if self.config_file is not None:
            return str(self.config_file)
        return os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")


@dataclasses.dataclass(frozen=True)
class Account:
    """One AWS account as reached through one named profile; clients per region."""

    profile: str
    session: boto3.Session
    settings: AwsSettings

    def _kwargs(self, region: str) -> dict[str, object]:
        return {
            "region_name": region,
            "endpoint_url": self.settings.endpoint_url,
            "config": self.settings.botocore_config(),
        }

    def ec2(self, region: str) -> EC2Client:
        return self.session.client("ec2", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def ebs(self, region: str) -> EBSClient:
        return self.session.client("ebs", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def ssm(self, region: str) -> SSMClient:
        return self.session.client("ssm", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def kms(self, region: str) -> KMSClient:
        return self.session.client("kms", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def s3(self, region: str) -> S3Client:
        return self.session.client("s3", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def sts(self, region: str) -> STSClient:
        return self.session.client("sts", **self._kwargs(region))  # type: ignore[call-overload,no-any-return]

    def account_id(self, region: str) -> str:
        """The account behind the profile (this is also the first call that resolves its credentials)."""
        try:
            return self.sts(region).get_caller_identity()["Account"]
        except (ClientError, BotoCoreError) as exc:
            raise AwsError(f"profile {self.profile}: cannot get credentials or identity: {exc}") from None


class _NoCredentialsInLogs(logging.Filter):
    """botocore's DEBUG log prints request params and response bodies: STS ones carry the web identity
    token and the session's keys. Those records are dropped (--debug must never print a secret)."""

    MARKERS = ("WebIdentityToken", "SecretAccessKey", "SessionToken", "AssumeRoleWithWebIdentity")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return False
        return not any(m in text for m in self.MARKERS)


_LOG_FILTER = _NoCredentialsInLogs()
# The botocore loggers that print requests or responses at DEBUG (a filter acts only on its own logger).
_LOGGERS_WITH_BODIES = ("botocore.endpoint", "botocore.parsers", "botocore.hooks", "botocore.auth")


def _guard_logs() -> None:
    for name in _LOGGERS_WITH_BODIES:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


class FileTokenLoader:
    """The token in a file, read at every refresh (its issuer rotates it on disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> str:
        try:
            token = self.path.read_text().strip()
        except OSError as exc:
            raise AwsError(f"web identity token file {self.path}: cannot read it: {exc.strerror}") from None
        if not token:
            raise AwsError(f"web identity token file {self.path} is empty")
        return token


class GithubActionsTokenLoader:
    """A fresh OIDC token from GitHub Actions' token endpoint (the job needs `permissions: id-token: write`).

    GitHub's tokens are short-lived, so a file written once at the job's start would be stale by the
    first refresh of a long copy wait; asking again at every refresh never is.
    """

    def __init__(self, audience: str, environ: dict[str, str] | None = None) -> None:
        self.audience = audience
        self.environ = os.environ if environ is None else environ

    def __call__(self) -> str:
        url = self.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
        bearer = self.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if not url or not bearer:
            raise AwsError(
                "web_identity.token_from: github-actions: ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN are not set "
                "(run inside a GitHub Actions job with `permissions: id-token: write`)"
            )
        sep = "&" if "?" in url else "?"
        query = urllib.parse.urlencode({"audience": self.audience})
        req = urllib.request.Request(f"{url}{sep}{query}", headers={"Authorization": f"Bearer {bearer}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                value = json.loads(resp.read()).get("value")
        except (OSError, ValueError) as exc:
            # The URL and bearer are not printed: the bearer is a secret of the job.
            raise AwsError(f"cannot get a GitHub Actions OIDC token: {type(exc).__name__}") from None
        if not isinstance(value, str) or not value:
            raise AwsError("GitHub Actions' token endpoint answered without a token")
        return value


class WebIdentityProvider(CredentialProvider):
    """botocore's AssumeRoleWithWebIdentity fetcher behind a credential provider: deferred (no call until
    credentials are used), then refreshed by botocore before expiry, reading the token again each time."""

    METHOD = "assume-role-with-web-identity"

    def __init__(
        self,
        wid: WebIdentity,
        client_creator: Callable[..., BaseClient],
        environ: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        loader: Callable[[], str]
        if wid.token_from is TokenSource.GITHUB_ACTIONS:
            loader = GithubActionsTokenLoader(wid.audience, environ)
        else:
            assert wid.token_file is not None  # the spec validator guarantees one of the two
            loader = FileTokenLoader(wid.token_file)
        self._fetcher = AssumeRoleWithWebIdentityCredentialFetcher(
            client_creator=client_creator,
            web_identity_token_loader=loader,
            role_arn=wid.role_arn,
            extra_args={"RoleSessionName": wid.session_name, "DurationSeconds": wid.duration_seconds},
        )

    def load(self) -> DeferredRefreshableCredentials:
        return DeferredRefreshableCredentials(
            method=self.METHOD, refresh_using=self._fetcher.fetch_credentials
        )


def open_account(
    profile: str,
    settings: AwsSettings,
    web_identity: WebIdentity | None = None,
    sts_region: str = "us-east-1",
) -> Account:
    """A boto3 session for a named profile; an unknown profile is an AwsError naming the config file.

    With `web_identity` the account's credentials come from AssumeRoleWithWebIdentity (STS in `sts_region`)
    and `profile` is only its name: it need not exist in the config file.
    """
    core = botocore.session.Session()
    # Set on this botocore session only: the process environment stays untouched (several accounts at once).
    if settings.config_file is not None:
        core.set_config_variable("config_file", str(settings.config_file))
    if settings.credentials_file is not None:
        core.set_config_variable("credentials_file", str(settings.credentials_file))
    if settings.session_hook is not None:
        settings.session_hook(core)
    if web_identity is not None:
        _guard_logs()

        def sts_client(service: str, **kwargs: Any) -> BaseClient:
            # botocore's own fetchers ignore a client's endpoint_url: the local endpoint is given here.
            kwargs.setdefault("region_name", sts_region)
            if settings.endpoint_url is not None:
                kwargs.setdefault("endpoint_url", settings.endpoint_url)
            return core.create_client(service, **kwargs)

        core.register_component(
            "credential_provider", CredentialResolver([WebIdentityProvider(web_identity, sts_client)])
        )
        return Account(profile=profile, session=boto3.Session(botocore_session=core), settings=settings)
    try:
        session = boto3.Session(botocore_session=core, profile_name=profile)
    except ProfileNotFound:
        raise AwsError(
            f"AWS profile {profile!r} not found in {settings.describe_config_file()} "
            "(add it there, e.g. with role_arn + source_profile)"
        ) from None
    if settings.endpoint_url is not None:
        _assume_roles_at(core, profile, settings.endpoint_url)
    return Account(profile=profile, session=session, settings=settings)


def spec_account(aws: Aws, profile: str, settings: AwsSettings) -> Account:
    """The account a spec names: its web identity when the spec gives one, else the named profile."""
    return open_account(profile, settings, aws.web_identity_for(profile), sts_region=aws.source_region)


def _assume_roles_at(core: botocore.session.Session, profile: str, endpoint_url: str) -> None:
    """Replace the session's assume-role provider by one whose STS client talks to `endpoint_url`.

    Built from botocore's public pieces as botocore builds its own (same profile, config loader and
    source-profile chain); the role's credentials still refresh themselves.
    """
    resolver = core.get_component("credential_provider")
    current = resolver.get_provider("assume-role")

    def client_creator(service_name: str, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", endpoint_url)
        return create_nested_client(core, service_name, **kwargs)

    cache: dict[str, Any] = {}
    ours = AssumeRoleProvider(
        load_config=lambda: core.full_config,
        client_creator=client_creator,
        cache=cache,
        profile_name=profile,
        credential_sourcer=CanonicalNameCredentialSourcer(
            [EnvProvider(), resolver.get_provider("container-role"), resolver.get_provider("iam-role")]
        ),
        profile_provider_builder=ProfileProviderBuilder(core, cache=cache),
    )
    resolver.providers[resolver.providers.index(current)] = ours
