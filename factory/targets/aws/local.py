"""The embedded local AWS (`aws.endpoint_url: local`): a moto server for one run; the demo needs no account.

moto is a stand-in, not AWS: it accepts any keys, keeps everything in memory, copies images at once, never
shows copies as encrypted and cannot import VMs; motoserver.py adds the AWS rules
for cross-account copies that moto lacks. It proves the factory's calls and
their order, not that AWS would accept the image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

from factory.errors import AwsError
from factory.spec import Aws, Spec
from factory.targets.aws import motoserver
from factory.targets.aws.session import AwsSettings, spec_account

LOCAL = "local"
# Dummy keys: moto accepts any; they only exist in the temporary credentials file.
_KEY_ID = "AKIALOCALFACTORY0000"
_SECRET = "local-moto-secret-not-a-real-key"


@dataclasses.dataclass(frozen=True)
class LocalAws:
    endpoint_url: str
    config_file: Path
    credentials_file: Path
    settings: AwsSettings
    # (profile, region) -> the ARN of the KMS key made for that spec entry.
    kms_keys: dict[tuple[str, str], str]


def profiles(aws: Aws) -> list[str]:
    """Every profile the spec names, source first, without repeats."""
    return list(dict.fromkeys([aws.source_profile, *(t.profile for t in aws.targets)]))


def write_profiles(folder: Path, names: list[str], endpoint_url: str, region: str) -> tuple[Path, Path]:
    """An AWS config and credentials file with every profile pointed at `endpoint_url` (mode 0600)."""
    config = folder / "config"
    creds = folder / "credentials"
    config.write_text(
        "".join(f"[profile {n}]\nregion = {region}\nendpoint_url = {endpoint_url}\n\n" for n in names)
    )
    creds.write_text(
        "".join(f"[{n}]\naws_access_key_id = {_KEY_ID}\naws_secret_access_key = {_SECRET}\n\n" for n in names)
    )
    for f in (config, creds):
        f.chmod(0o600)
    return config, creds


def _make_keys(spec_aws: Aws, settings: AwsSettings) -> dict[tuple[str, str], str]:
    """Create the KMS keys and aliases the spec names; a bare key id or ARN cannot be chosen in moto."""
    made: dict[tuple[str, str], str] = {}
    for target in spec_aws.targets:
        account = spec_account(spec_aws, target.profile, settings)
        for region, key in target.regions.items():
            kms = account.kms(region)
            alias = key if key.startswith("alias/") else key.split(":", 5)[-1]
            if not alias.startswith("alias/"):
                raise AwsError(
                    f"aws.targets[{target.profile}].regions.{region}: the local AWS can only create KMS keys "
                    f"named by alias (alias/...), not {key!r}"
                )
            with contextlib.suppress(kms.exceptions.NotFoundException):
                made[(target.profile, region)] = kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
                continue
            meta = kms.create_key(Description=f"factory local key {alias}")["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
            made[(target.profile, region)] = meta["Arn"]
    return made


def _make_bucket(spec_aws: Aws, settings: AwsSettings) -> None:
    s3 = spec_account(spec_aws, spec_aws.source_profile, settings).s3(spec_aws.source_region)
    assert spec_aws.s3_bucket is not None
    if spec_aws.source_region == "us-east-1":
        # us-east-1 is the one region that refuses an explicit LocationConstraint.
        s3.create_bucket(Bucket=spec_aws.s3_bucket)
    else:
        s3.create_bucket(
            Bucket=spec_aws.s3_bucket,
            CreateBucketConfiguration={"LocationConstraint": spec_aws.source_region},  # type: ignore[typeddict-item]
        )


@contextlib.contextmanager
def local_aws(spec: Spec) -> Iterator[LocalAws]:
    """Start moto on 127.0.0.1 (free port), write profiles + KMS keys for `spec`; stop and remove on exit."""
    if spec.aws is None:
        raise AwsError(f"{spec.source}: spec has no aws section")
    # The same extended server the tests use (cross-account CopyImage rules): see motoserver.py.
    with motoserver.running() as url, tempfile.TemporaryDirectory(prefix="factory-local-aws-") as tmp:
        config, creds = write_profiles(Path(tmp), profiles(spec.aws), url, spec.aws.source_region)
        settings = AwsSettings(endpoint_url=url, config_file=config, credentials_file=creds)
        if spec.aws.s3_bucket:
            _make_bucket(spec.aws, settings)
        keys = _make_keys(spec.aws, settings)
        yield LocalAws(url, config, creds, settings, keys)
