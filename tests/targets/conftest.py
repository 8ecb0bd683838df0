"""The local stand-ins the target tests publish to, one session fixture per service, and a gated build.

- vcsim: govmomi's vCenter simulator, built from tests/targets/vcsim/main.go with Debian's Go and
  golang-github-vmware-govmomi-dev into ~/.cache/image-factory/vcsim/<hash of source + govmomi version>.
- Glance: see glance_service.py (its own virtual environment, sqlite, file store, no Keystone).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock

from factory import digest, export, tools
from factory.record import BuildDir
from factory.spec import Spec, load_spec
from factory.targets.base import TargetContext
from tests.targets.registry_service import registry  # noqa: F401 (docker-registry session fixture)

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-factory"
GOVMOMI = "golang-github-vmware-govmomi-dev"
DISK_SIZE = 64 * 1024 * 1024


def _govmomi_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", GOVMOMI], check=False, capture_output=True, text=True
    )
    if out.returncode != 0:
        pytest.fail(
            f"{GOVMOMI} is not installed (apt-get install golang-go {GOVMOMI}; see .ci/apt-packages.txt)"
        )
    return out.stdout.strip()


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    source = HERE / "vcsim" / "main.go"
    key = hashlib.sha256(source.read_bytes() + _govmomi_version().encode()).hexdigest()[:16]
    folder = CACHE / "vcsim" / key
    binary = folder / "vcsim"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not binary.is_file():
            if shutil.which("go") is None:
                pytest.fail("go is not installed (apt-get install golang-go; see .ci/apt-packages.txt)")
            work = folder / "src"
            work.mkdir(exist_ok=True)
            shutil.copy(source, work / "main.go")
            env = {
                **os.environ,
                "GOPATH": f"{folder / 'gopath'}:/usr/share/gocode",
                "GO111MODULE": "off",
                # Shared by every source version: a changed main.go rebuilds in seconds.
                "GOCACHE": str(CACHE / "vcsim" / "gocache"),
            }
            tmp = folder / "vcsim.tmp"
            subprocess.run(
                ["go", "build", "-o", str(tmp), "main.go"], cwd=work, env=env, check=True, timeout=600
            )
            tmp.replace(binary)
    return binary


@dataclass(frozen=True)
class Vcsim:
    url: str  # http://127.0.0.1:PORT/sdk, no credentials
    username: str
    password: str
    log: Path

    def nfc_bytes(self) -> list[int]:
        """Bytes vcsim received per NFC upload, from its own log ("nfc POST ...: transferred N bytes")."""
        return [int(n) for n in re.findall(r"nfc POST \S+: transferred (\d+) bytes", self.log.read_text())]


@pytest.fixture(scope="session")
def vcsim(vcsim_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    log = tmp_path_factory.mktemp("vcsim") / "vcsim.log"
    with log.open("wb") as err:
        env = {**os.environ, "VCSIM_USER": "factory", "VCSIM_PASSWORD": secrets.token_hex(12)}
        proc = subprocess.Popen([str(vcsim_binary)], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        assert proc.stdout is not None
        line = ""
        timer = threading.Timer(30, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline().strip()
        finally:
            timer.cancel()
        match = re.match(r"^(https?)://([^:]+):([^@]+)@([^/]+)(/sdk)$", line)
        if match is None:
            proc.kill()
            pytest.fail(f"vcsim did not print its URL (got {line!r}); see {log}")
        scheme, user, password, hostport, path = match.groups()
        yield Vcsim(f"{scheme}://{hostport}{path}", user, password, log)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def vsphere_login(vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch) -> Vcsim:
    monkeypatch.setenv("VSPHERE_USER", vcsim.username)
    monkeypatch.setenv("VSPHERE_PASSWORD", vcsim.password)
    return vcsim


# --- a verified, sealed, exported build (real record, real artifacts) -------------------------------------


@pytest.fixture(scope="session")
def sealed_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 MiB qcow2 with a few MiB of data: stands for the sealed image (what matters is its bytes)."""
    disk = tmp_path_factory.mktemp("sealed") / "sealed.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, str(DISK_SIZE)], timeout=60)
    tools.run(
        [
            "qemu-io",
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 0 2M",
            "-c",
            f"write -P 0x5c {DISK_SIZE // 2} 2M",
            disk,
        ],
        timeout=60,
    )
    return disk


def write_spec(folder: Path, **sections: Any) -> Spec:
    """A testbed-shaped spec in `folder` with the given target sections and the exports they need."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.ks").write_text("text\n")
    raw: dict[str, Any] = {
        "name": sections.pop("name", "img"),
        "os": sections.pop("os", "testbed"),
        "media": {"builtin": "testbed", "volume_label": "X"},
        "kickstart": {"path": "t.ks"},
        "vm": {"cpus": 2, "memory_mib": 1024, "disk_gib": 1},
        "export": sections.pop("export", ["qcow2", "raw", "ova"]),
        **sections,
    }
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def gated_build(
    spec: Spec, root: Path, disk: Path, *, build_id: str | None = None, verified: bool = True
) -> BuildDir:
    """A build whose record says verify passed, seal re-checked and export finished, bound by sha256."""
    build = BuildDir.create(root, spec.name, build_id)
    sha = digest.sha256_file(disk)
    build.record_stage(
        "verify", "ok" if verified else "failed", result={"passed": verified, "image_sha256": sha}
    )
    build.record_stage(
        "seal",
        "ok",
        result={
            "source_sha256": sha,
            "sealed_sha256": sha,
            "sealed_image": str(disk),
            "recheck_passed": True,
        },
    )
    res = export.export(spec, disk, sha, build.path / "export", build_id=build.build_id)
    build.record_stage("export", "ok", result=res)
    return build


def ctx_for(spec: Spec, build: BuildDir, events: list[Any] | None = None) -> TargetContext:
    return TargetContext(
        spec=spec, build=build, events=(events.append if events is not None else lambda e: None)
    )


def ova_disk_size(path: Path) -> int:
    with tarfile.open(path) as tar:
        return next(m.size for m in tar.getmembers() if m.name.endswith(".vmdk"))


def manifest(build: BuildDir, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build.path / "targets" / f"{key}.json").read_text())
    return data
