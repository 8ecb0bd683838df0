"""One moto server per test session (a real HTTP endpoint on 127.0.0.1, started by factory.aws.motoserver
with its cross-account rules), reset between tests.

moto is a stand-in for AWS; where it cannot show a state (encryption of copies, import tasks), tests assert
on the requests actually sent, captured with botocore event hooks (`Recorder`).
"""

from __future__ import annotations

import dataclasses
import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.aws import motoserver
from factory.aws.local import write_profiles
from factory.aws.promote import Tuning
from factory.aws.session import AwsSettings, open_account
from factory.record import BuildDir
from factory.spec import Spec

SOURCE = "images-build"
TARGETS = {
    "images-prod": {"us-east-1": "alias/prod", "eu-west-1": "alias/prod"},
    "images-staging": {"us-west-2": "alias/staging"},
}
MIB = 1024**2
FAST = Tuning(poll_interval=0.05, workers=4, block_attempts=2, backoff=0.01)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The extended moto server (factory.aws.motoserver), in its own process for the whole session."""
    with motoserver.running(tmp_path_factory.mktemp("moto") / "server.log") as url:
        yield url


@pytest.fixture
def aws_files(moto_url: str, tmp_path: Path) -> Iterator[AwsSettings]:
    """Fresh moto state; a config + credentials file with the spec's profiles (plain keys: one account)."""
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    folder = tmp_path / "aws"
    folder.mkdir()
    config, creds = write_profiles(folder, [SOURCE, *TARGETS], moto_url, "us-east-1")
    # Few, quick retries: a failing endpoint must fail the test in seconds.
    yield AwsSettings(endpoint_url=moto_url, config_file=config, credentials_file=creds, max_attempts=2)


def make_keys(settings: AwsSettings, targets: dict[str, dict[str, str]] = TARGETS) -> None:
    for profile, regions in targets.items():
        for region, alias in regions.items():
            kms = open_account(profile, settings).kms(region)
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=alias, TargetKeyId=key)


def make_spec(tmp_path: Path, settings: AwsSettings, **aws: Any) -> Spec:
    ks = tmp_path / "t.ks"
    ks.write_text("text\n")
    fields: dict[str, Any] = {
        "source_profile": SOURCE,
        "source_region": "us-east-1",
        "ssm_parameter": "/images/testimg/latest",
        "keep": 2,
        "copy_timeout": 30,
        "endpoint_url": settings.endpoint_url,
        "targets": [{"profile": p, "regions": r} for p, r in TARGETS.items()],
    }
    fields.update(aws)
    return Spec.model_validate(
        {
            "name": "testimg",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": str(ks)},
            "export": ["raw"],
            "aws": fields,
            "source": tmp_path / "spec.yaml",
        }
    )


@dataclasses.dataclass
class Built:
    build: BuildDir
    raw: Path
    sha256: str


def make_build(tmp_path: Path, *, verified: bool = True, build_id: str = "20260101T000000Z-abcd") -> Built:
    """A build record with passing verify/seal/export stages (as the gate reads them) and a sparse raw
    image: 64 MiB apparent, three scattered data extents, one all-zero block written out."""
    from factory.digest import sha256_file

    build = BuildDir.create(tmp_path / "builds", "testimg", build_id)
    raw = build.path / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(64 * MIB)
        for offset, size in ((0, 1 * MIB), (20 * MIB + 4096, 300_000), (63 * MIB, 512 * 1024)):
            fh.seek(offset)
            fh.write(os.urandom(size))
        fh.seek(40 * MIB)
        fh.write(bytes(524288))  # allocated but zero: read, then skipped
    sha = sha256_file(raw)
    build.set("inputs", {"kickstart_sha256": "k" * 64})
    build.record_stage(
        "verify", "ok" if verified else "failed", result={"passed": verified, "image_sha256": "q" * 64}
    )
    build.record_stage(
        "seal", "ok", result={"source_sha256": "q" * 64, "sealed_sha256": "s" * 64, "recheck_passed": True}
    )
    build.record_stage(
        "export",
        "ok",
        result={
            "artifacts": [
                {
                    "format": "raw",
                    "path": str(raw),
                    "sha256": sha,
                    "size": 64 * MIB,
                    "source_sha256": "s" * 64,
                }
            ]
        },
    )
    return Built(build, raw, sha)


class Recorder:
    """Counts the API calls every session made (before-call), by operation name, with their params."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.extra: list[Callable[[Any], None]] = []

    def hook(self, core: Any) -> None:
        # provide-client-params: the API parameters as the caller gave them (before-call sees the wire form).
        core.register("provide-client-params", self._before_call)
        for extra in self.extra:
            extra(core)

    def _before_call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def ops(self, name: str) -> list[dict[str, Any]]:
        return [p for n, p in self.calls if n == name]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def hooked(aws_files: AwsSettings, recorder: Recorder) -> AwsSettings:
    return dataclasses.replace(aws_files, session_hook=recorder.hook)
