"""The local stand-ins the target tests publish to, one session fixture per service, and a gated build.

- vcsim: govmomi's vCenter simulator, built from tests/targets/vcsim/main.go with Debian's Go and
  golang-github-vmware-govmomi-dev into ~/.cache/image-factory/vcsim/<hash of source + govmomi version>.
- Glance: see glance_service.py (its own virtual environment, sqlite, file store, no Keystone).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.core import digest
from factory.core.record import BuildDir
from factory.host import tools
from factory.spec import Spec, load_spec
from factory.stages.export import export
from factory.targets.base import TargetContext
from tests import records
from tests.targets import vcsim_service
from tests.targets.registry_service import registry  # noqa: F401 (docker-registry session fixture)
from tests.targets.vcsim_service import Vcsim

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "image-factory"
DISK_SIZE = 64 * 1024 * 1024


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    try:
        return vcsim_service.build(CACHE)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def vcsim(vcsim_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    server = vcsim_service.start(vcsim_binary, tmp_path_factory.mktemp("vcsim"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vcsim_tls(vcsim_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    """A second simulator serving HTTPS with a self-signed certificate."""
    server = vcsim_service.start(vcsim_binary, tmp_path_factory.mktemp("vcsim-tls"), tls=True)
    yield server
    server.stop()


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
    build.record_stage("verify", "ok" if verified else "failed", result=records.verified(sha, verified))
    build.record_stage("seal", "ok", result=records.sealed(sha, sha, disk))
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


# --- Glance --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def glance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Glance (all disk formats) for the session; yields its URL."""
    from tests.targets import glance_service

    server = glance_service.start(CACHE, tmp_path_factory.mktemp("glance"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def glance_raw_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second Glance that accepts only raw disks (as a Ceph-backed cloud may be set up)."""
    from tests.targets import glance_service

    server = glance_service.start(
        CACHE, tmp_path_factory.mktemp("glance-raw"), "[image_format]\ndisk_formats = raw\n"
    )
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def glance_keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Glance behind keystonemiddleware: requests without valid credentials are refused (401)."""
    from tests.targets import glance_service

    server = glance_service.start(CACHE, tmp_path_factory.mktemp("glance-ks"), keystone=True)
    yield server.url
    server.stop()


def write_clouds(path: Path, clouds: dict[str, str]) -> Path:
    """clouds.yaml with one entry per name -> Glance URL (no Keystone: auth_type none + endpoint override)."""
    doc = {
        "clouds": {
            name: {"auth_type": "none", "auth": {"endpoint": url}, "image_endpoint_override": url}
            for name, url in clouds.items()
        }
    }
    path.write_text(yaml.safe_dump(doc))
    return path
