"""One moto server per test session (a real HTTP endpoint on 127.0.0.1, started by
factory.targets.aws.motoserver
with its cross-account rules), reset between tests.

moto is a stand-in for AWS; where it cannot show a state (encryption of copies, import tasks), tests assert
on the requests actually sent, captured with botocore event hooks (`Recorder`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from factory.core.record import BuildDir
from factory.spec import Spec
from factory.targets.aws import motoserver
from factory.targets.aws.local import write_profiles
from factory.targets.aws.promote import Tuning
from factory.targets.aws.session import AwsSettings, open_account
from tests import records

SOURCE = "images-build"
TARGETS = {
    "images-prod": {"us-east-1": "alias/prod", "eu-west-1": "alias/prod"},
    "images-staging": {"us-west-2": "alias/staging"},
}
MIB = 1024**2
ROOT = Path(__file__).resolve().parents[2]
FAST = Tuning(poll_interval=0.05, workers=4, block_attempts=2, backoff=0.01)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The extended moto server (factory.targets.aws.motoserver), in its own process for the whole session."""
    with motoserver.running(tmp_path_factory.mktemp("moto") / "server.log") as url:
        yield url


def reset_moto(moto_url: str) -> None:
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


@pytest.fixture
def aws_files(moto_url: str, tmp_path: Path) -> Iterator[AwsSettings]:
    """Fresh moto state; a config + credentials file with the spec's profiles (plain keys: one account)."""
    reset_moto(moto_url)
    folder = tmp_path / "aws"
    folder.mkdir()
    config, creds = write_profiles(folder, [SOURCE, *TARGETS], moto_url, "us-east-1")
    # Few, quick retries: a failing endpoint must fail the test in seconds.
    yield AwsSettings(endpoint_url=moto_url, config_file=config, credentials_file=creds, max_attempts=2)


# Three accounts, each reached through a role profile (role_arn + source_profile), as the README advises.
ACCOUNTS = {SOURCE: "111111111111", "images-prod": "222222222222", "images-staging": "333333333333"}


def write_role_profiles(
    folder: Path, *, extra_config: str = "", profile_lines: str = ""
) -> tuple[Path, Path]:
    """A config with a static-key `base` profile and one role profile per account in ACCOUNTS; no
    endpoint in any profile unless `profile_lines`/`extra_config` put one there."""
    folder.mkdir(parents=True, exist_ok=True)
    config, creds = folder / "config", folder / "credentials"
    roles = "".join(
        f"[profile {name}]\nregion = us-east-1\nrole_arn = arn:aws:iam::{account}:role/image-promote\n"
        f"source_profile = base\n{profile_lines}\n"
        for name, account in ACCOUNTS.items()
    )
    config.write_text(f"[profile base]\nregion = us-east-1\n{profile_lines}\n{roles}{extra_config}")
    creds.write_text("[base]\naws_access_key_id = AKIABASE0000\naws_secret_access_key = base-secret\n")
    for f in (config, creds):
        f.chmod(0o600)
    return config, creds


@pytest.fixture
def role_accounts(moto_url: str, tmp_path: Path, recorder: Recorder) -> AwsSettings:
    """Fresh moto state; the three accounts of ACCOUNTS as role profiles, the endpoint given only in the
    settings (as `aws.endpoint_url` gives it), every request recorded."""
    reset_moto(moto_url)
    config, creds = write_role_profiles(tmp_path / "aws-roles")
    return AwsSettings(
        endpoint_url=moto_url,
        config_file=config,
        credentials_file=creds,
        max_attempts=2,
        session_hook=recorder.hook,
    )


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
    from factory.core.digest import sha256_file

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
    build.record_stage("verify", "ok" if verified else "failed", result=records.verified("q" * 64, verified))
    build.record_stage("seal", "ok", result=records.sealed("q" * 64, "s" * 64, build.path / "sealed.qcow2"))
    art = records.artifact("raw", raw, sha, "s" * 64, size=64 * MIB)
    build.record_stage("export", "ok", result=records.exported(art))
    return Built(build, raw, sha)


class Recorder:
    """Counts the API calls every session made (before-call), by operation name, with their params."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.urls: list[str] = []
        self.extra: list[Callable[[Any], None]] = []

    def hook(self, core: Any) -> None:
        # provide-client-params: the API parameters as the caller gave them (before-call sees the wire form).
        core.register("provide-client-params", self._before_call)
        # before-send: every HTTP request any client of the session sends, the role assumption's included.
        core.register("before-send", self._before_send)
        for extra in self.extra:
            extra(core)

    def _before_send(self, request: Any, **_: Any) -> None:
        self.urls.append(str(request.url))

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


class RawBody:
    """The bit of a urllib3 response botocore reads a body from (for answers made up by a hook)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.body


class OutsideWorld:
    """A recording HTTP(S) proxy on 127.0.0.1 that every request not bound for 127.0.0.1 is sent to (through
    HTTP_PROXY/HTTPS_PROXY, with NO_PROXY=127.0.0.1): whatever it sees would have left the machine."""

    def __init__(self) -> None:
        import socketserver

        seen = self.seen = []  # type: list[str]

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                seen.append(self.rfile.readline().decode(errors="replace").strip())
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outside_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[OutsideWorld]:
    world = OutsideWorld()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, world.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")
    yield world
    world.close()


KILLED_RUN = """
import json, sys, time
from pathlib import Path
from factory.targets.aws.promote import promote, Tuning
from factory.targets.aws.session import AwsSettings
from factory.core.record import BuildDir
from factory.spec import Spec

args = json.loads(sys.argv[1])
marker = Path(args["marker"])

def hang_after_first_copy(**_):
    marker.write_text("copy sent")
    time.sleep(120)  # killed here, with the copy made but not yet in the manifest

def hook(core):
    core.register("after-call.ec2.CopyImage", hang_after_first_copy)

settings = AwsSettings(endpoint_url=args["url"], config_file=Path(args["config"]),
                       credentials_file=Path(args["creds"]), max_attempts=2, session_hook=hook)
spec = Spec.model_validate_json(Path(args["spec"]).read_text())
build = BuildDir.open(Path(args["build"]))
promote(spec, build, Path(args["raw"]), args["sha"], settings=settings, tuning=Tuning(poll_interval=0.05))
"""


def kill_after_first_copy(tmp_path: Path, settings: AwsSettings, spec: Spec, built: Built) -> None:
    """Run a promotion in a subprocess and SIGKILL it right after its first CopyImage was answered."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    marker = tmp_path / "marker"
    args = {
        "marker": str(marker),
        "url": settings.endpoint_url,
        "config": str(settings.config_file),
        "creds": str(settings.credentials_file),
        "spec": str(spec_file),
        "build": str(built.build.path),
        "raw": str(built.raw),
        "sha": built.sha256,
    }
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, json.dumps(args)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the promotion subprocess ended before its first CopyImage"
            assert time.monotonic() < deadline, "no CopyImage sent within 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def assert_resumed_without_duplicates(
    copies: dict[tuple[str, str], list[str]], result: Any, recorder: Recorder, manifest: Path
) -> None:
    """After a killed promotion was run again: one copy per (profile, region), the ones the result names,
    only the two copies the killed run never asked for, no second upload, a complete manifest."""
    assert all(len(v) == 1 for v in copies.values()), copies
    assert {k: v[0] for k, v in copies.items()} == {
        (p, r): ami for p, regions in result.amis.items() for r, ami in regions.items()
    }
    assert len(recorder.ops("CopyImage")) == 2  # only the two copies the killed run never asked for
    assert recorder.ops("StartSnapshot") == []  # its source AMI was found, not uploaded again
    assert json.loads(manifest.read_text())["state"] == "complete"
