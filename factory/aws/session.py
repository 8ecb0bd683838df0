"""AWS credentials and clients: one boto3 named profile per account, never keys in the environment.

A profile with `role_arn` + `source_profile` gives botocore's AssumeRoleProvider, whose credentials refresh
themselves before they expire: a long upload outlives the one-hour cap on chained role sessions.

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
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleProvider,
    CanonicalNameCredentialSourcer,
    EnvProvider,
    ProfileProviderBuilder,
)
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.utils import create_nested_client

from factory.errors import AwsError

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


def open_account(profile: str, settings: AwsSettings) -> Account:
    """A boto3 session for a named profile; an unknown profile is an AwsError naming the config file."""
    core = botocore.session.Session()
    # Set on this botocore session only: the process environment stays untouched (several accounts at once).
    if settings.config_file is not None:
        core.set_config_variable("config_file", str(settings.config_file))
    if settings.credentials_file is not None:
        core.set_config_variable("credentials_file", str(settings.credentials_file))
    if settings.session_hook is not None:
        settings.session_hook(core)
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
