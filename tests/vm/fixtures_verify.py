"""VM fixtures for verify and seal: one installed testbed per session, shared by both test modules.

Plain functions that tests/vm/test_verify.py and test_seal.py wrap in their own small fixtures; the install
is memoised here (one per session, whichever module asks first): a fixture defined in two modules would
otherwise install twice.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from factory.core.record import BuildDir
from factory.spec import Spec, load_spec
from factory.stages.install import install
from factory.stages.media import media
from factory.vm import sshkey

ROOT = Path(__file__).resolve().parents[2]


def make_testbed_spec(folder: Path, kickstart: Path | None = None, **expect: object) -> Spec:
    """specs/testbed.yaml, copied into `folder` with an optional other kickstart and expectations."""
    raw = yaml.safe_load((ROOT / "specs" / "testbed.yaml").read_text())
    raw["kickstart"]["path"] = str(kickstart or ROOT / "kickstarts" / "testbed.ks")
    raw["expect"].update(expect)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "testbed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def kickstart_with(folder: Path, post: str = "", *, cloud_init: bool) -> Path:
    """kickstarts/testbed.ks, with cloud-init in %packages when `cloud_init` (the testbed's cloud layer,
    which every metadata boot needs) and optionally one more %post (a fault under test)."""
    text = (ROOT / "kickstarts" / "testbed.ks").read_text()
    if cloud_init:
        with_cloud = text.replace("%packages\n", "%packages\ncloud-init\n", 1)
        assert with_cloud != text, "kickstarts/testbed.ks has no %packages section"
        text = with_cloud
    folder.mkdir(parents=True, exist_ok=True)
    ks = folder / "testbed.ks"
    ks.write_text(text + (f"\n%post\n{post}\n%end\n" if post else ""))
    return ks


@dataclass(frozen=True)
class Installed:
    spec: Spec
    build: BuildDir
    disk: Path


_INSTALLS: dict[str, Installed] = {}


def install_testbed(
    root: Path, name: str, kickstart: Path | None = None, *, cloud_init: bool = False
) -> Installed:
    """Install the testbed once per (session, name) into root/name; `cloud_init`: the kickstart installs
    it (kickstart_with), so the spec expects it."""
    if name not in _INSTALLS:
        spec = make_testbed_spec(root / name, kickstart, cloud_init=cloud_init)
        build = BuildDir.create(root / name / "build", spec.name)
        result = install.install(spec, media.prepare(spec), build)
        build.record_stage("install", "ok", result=result)
        _INSTALLS[name] = Installed(spec, build, result.disk)
    return _INSTALLS[name]


def session_testbed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The testbed with cloud-init (the target boots, re-verify and seal tests all use it)."""
    root = tmp_path_factory.getbasetemp() / "verify-vm"
    return install_testbed(root, "testbed", kickstart_with(root / "ks", cloud_init=True), cloud_init=True)


def fresh_copy(installed: Installed, folder: Path) -> Installed:
    """A copy of the installed build (disk, key, record) a test may seal or spoil without touching others."""
    src = installed.build
    dest = BuildDir.create(folder / "build", src.spec_name, src.build_id)
    for name in ("disk.qcow2", "build-key", "build-key.pub"):
        shutil.copy2(src.path / name, dest.path / name)
    dest.record_stage("install", "ok", result=(src.stage("install") or {}).get("result"))
    return Installed(installed.spec, dest, dest.path / "disk.qcow2")


def key_of(build: BuildDir) -> sshkey.BuildKey:
    return sshkey.load(build.key)
