"""A real container registry for the tests: Debian's `docker-registry` (the CNCF distribution server).

One per test session, on 127.0.0.1 with a port the server picks itself (read back from its log), filesystem
storage in a temp folder, deletes enabled (tag retirement) and htpasswd authentication with a random
password, so an auth file with the wrong password is really refused. Plain HTTP: specs set tls_verify false.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

START_TIMEOUT_S = 30


@dataclass(frozen=True)
class LocalRegistry:
    url: str  # 127.0.0.1:PORT
    auth_file: Path  # containers-auth.json with the right credentials
    wrong_auth_file: Path  # the same user, a wrong password
    password: str
    storage: Path


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        # crypt is deprecated (gone in 3.13); glibc's libxcrypt makes the bcrypt hash htpasswd needs.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed: str = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    return hashed


def _auth_file(path: Path, url: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {url: {"auth": token}}}))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    if shutil.which("docker-registry") is None:
        pytest.fail(
            "docker-registry is not installed (apt-get install docker-registry; see .ci/apt-packages.txt)"
        )
    work = tmp_path_factory.mktemp("registry")
    password = secrets.token_hex(16)
    (work / "htpasswd").write_text(f"factory:{_bcrypt(password)}\n")
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "factory-tests", "path": str(work / "htpasswd")}},
    }
    (work / "config.yml").write_text(yaml.safe_dump(config))
    log = work / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(work / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        found = None
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"listening on (127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
            time.sleep(0.05)
        if found is None:
            pytest.fail(f"docker-registry did not start; see {log}")
        url = found.group(1)
        yield LocalRegistry(
            url=url,
            auth_file=_auth_file(work / "auth.json", url, "factory", password),
            wrong_auth_file=_auth_file(work / "wrong-auth.json", url, "factory", "not-" + password),
            password=password,
            storage=work / "data",
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
