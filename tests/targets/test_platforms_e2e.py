"""`factory build specs/testbed-platforms.yaml --promote`: the real testbed install, verified, sealed,
exported as raw (+ block map), qcow2, OVA, an OCI image and a PXE tree, then published to every target —
AWS (embedded moto), vSphere (vcsim), OpenStack (Glance) and a registry (docker-registry) — with the summary
in --json and the template, the image and the pushed tags read back from the services."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import yaml

from tests.targets.conftest import write_clouds
from tests.targets.registry_service import LocalRegistry
from tests.targets.vcsim_service import Vcsim

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "testbed-platforms.yaml"

pytestmark = [pytest.mark.vm, pytest.mark.targets]


@pytest.fixture(scope="module")
def build_root() -> Iterator[Path]:
    # Short path: QEMU's unix sockets live in the build dir and sun_path holds 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fp-", dir="/tmp"))
    yield root
    if not os.environ.get("FACTORY_KEEP_TEST_BUILDS"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def outcome(
    build_root: Path,
    vcsim: Vcsim,
    glance: str,
    registry: LocalRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("platforms")
    raw = yaml.safe_load(SPEC.read_text())
    raw["vsphere"]["url"] = vcsim.url  # the simulator listens on a free port
    raw["registry"].update(url=registry.url, auth_file=str(registry.auth_file))
    raw["kickstart"]["path"] = str((SPEC.parent / raw["kickstart"]["path"]).resolve())
    spec = work / "testbed-platforms.yaml"
    spec.write_text(yaml.safe_dump(raw))
    clouds = write_clouds(work / "clouds.yaml", {"testbed-glance": glance})
    env = {
        **os.environ,
        "VSPHERE_USER": vcsim.username,
        "VSPHERE_PASSWORD": vcsim.password,
        "OS_CLIENT_CONFIG_FILE": str(clouds),
    }
    argv = [
        sys.executable,
        "-m",
        "factory",
        "build",
        str(spec),
        "--promote",
        "--json",
        "--build-dir",
        str(build_root),
    ]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = json.loads(proc.stdout)
    assert vcsim.password not in proc.stdout + proc.stderr
    return dict(result)


def test_every_target_published(outcome: dict[str, Any], vcsim: Vcsim, glance: str) -> None:
    assert outcome["stages"]["promote"]["status"] == "ok"
    targets = outcome["targets"]
    assert sorted(targets) == ["aws", "openstack", "registry", "vsphere"]
    build_id = Path(outcome["build_dir"]).name
    (template,) = targets["vsphere"]["images"]
    assert template["state"] == "template" and build_id in template["name"]
    assert targets["vsphere"]["stats"]["bytes_sent"] < targets["vsphere"]["stats"]["image_bytes"]
    (image,) = targets["openstack"]["images"]
    glance_image = openstack.connect(
        auth_type="none", auth={"endpoint": glance}, image_endpoint_override=glance
    ).image.get_image(image["id"])
    assert glance_image.status == "active"
    assert f"factory:build-id={build_id}" in glance_image.tags
    assert outcome["amis"] and all(a.startswith("ami-") for r in outcome["amis"].values() for a in r.values())
    record = json.loads((Path(outcome["build_dir"]) / "record.json").read_text())
    ova = next(a for a in record["stages"]["export"]["result"]["artifacts"] if a["format"] == "ova")
    assert f"factory:image-sha256={ova['sha256']}" not in glance_image.tags  # Glance gets the qcow2 ...
    qcow2 = next(a for a in record["stages"]["export"]["result"]["artifacts"] if a["format"] == "qcow2")
    assert f"factory:image-sha256={qcow2['sha256']}" in glance_image.tags  # ... bound by its own sha256
    for key in ("vsphere", "openstack"):
        manifest = json.loads((Path(outcome["build_dir"]) / "targets" / f"{key}.json").read_text())
        assert manifest["state"] == "complete"


def test_container_image_and_pxe_tree(outcome: dict[str, Any], registry: LocalRegistry) -> None:
    build = Path(outcome["build_dir"])
    record = json.loads((build / "record.json").read_text())
    seal, export = record["stages"]["seal"]["result"], record["stages"]["export"]["result"]
    formats = {a["format"]: a for a in export["artifacts"]}
    assert {"raw", "qcow2", "ova", "oci", "docker-archive", "pxe"} <= set(formats)
    # The container image: checked with the container profile, bound to the sealed image, a real layout.
    assert all(formats[f]["source_sha256"] == seal["sealed_sha256"] for f in ("oci", "docker-archive", "pxe"))
    assert export["oci"]["check_passed"] is True and export["oci"]["reader"] == "debugfs"
    assert (Path(formats["oci"]["path"]) / "index.json").is_file()
    pxe = Path(formats["pxe"]["path"])
    assert (pxe / "tftp" / "pxelinux.0").is_file() and (
        pxe / "http" / "ks" / "testbed-platforms.ks"
    ).is_file()
    # Pushed: the build's tag and `latest` name the layout's manifest, as the registry itself says.
    build_id = build.name
    for tag in (build_id, "latest"):
        proc = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"--authfile={registry.auth_file}",
             f"docker://{registry.url}/factory/testbed:{tag}"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert registry.password not in json.dumps(outcome)
