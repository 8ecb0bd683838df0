"""OpenStack publishing against a real Glance (from PyPI, its own venv, no Keystone), reached through a
clouds.yaml the test writes: the image, its properties, tags, hash, members and data are read back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests

from factory import cli
from factory.core.record import BuildDir
from factory.errors import EXIT_OPENSTACK, EXIT_VERIFY, OpenstackError, VerifyError
from factory.spec import Spec
from factory.targets import runner
from factory.targets.base import exported
from factory.targets.openstack import OpenstackTarget
from tests.targets.conftest import ctx_for, gated_build, manifest, write_clouds, write_spec

pytestmark = pytest.mark.targets


@pytest.fixture
def clouds(tmp_path: Path, glance: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_clouds(tmp_path / "clouds.yaml", {"local": glance, "member-a": glance})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def conn(url: str) -> Any:
    return openstack.connect(auth_type="none", auth={"endpoint": url}, image_endpoint_override=url)


def spec_images(url: str, spec_name: str) -> list[Any]:
    c = conn(url)
    found = {}
    for hidden in (False, True):
        for image in c.image.images(tag=[f"factory:spec={spec_name}"], is_hidden=hidden):
            found[image.id] = image
    return list(found.values())


def stored(url: str, image_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = requests.get(f"{url}/v2/images/{image_id}", timeout=30).json()
    return doc


def os_section(**over: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"clouds": [{"cloud": "local"}], "keep": 2, "image_name": "{name}-{build_id}"}
    section.update(over)
    return section


def publish(spec: Spec, build: BuildDir) -> Any:
    ctx = ctx_for(spec, build)
    return runner.publish(ctx, runner.select(ctx, ["openstack"]))["openstack"]


def test_publish_reads_back_image(tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path) -> None:
    section = os_section(
        clouds=[{"cloud": "local", "share_with": ["proj-a", "proj-b"], "accept_as": {"proj-a": "member-a"}}],
        hw_qemu_guest_agent=True,
    )
    spec = write_spec(
        tmp_path / "spec", name="os-readback", os="centos", vm={"disk_gib": 3}, openstack=section
    )
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    pub = publish(spec, build)
    (pimage,) = pub.images
    qcow2 = next(a for a in exported(build) if a.format == "qcow2")
    assert pub.stats["bytes_sent"] == qcow2.size
    c = conn(glance)
    image = c.image.get_image(pimage.id)
    assert (image.name, image.status, image.disk_format, image.container_format) == (
        f"os-readback-{build.build_id}",
        "active",
        "qcow2",
        "bare",
    )
    assert (image.min_disk, image.min_ram, image.visibility) == (3, 512, "shared")
    # Glance's own JSON: every property flat, as Nova reads it.
    props = stored(glance, image.id)
    assert {
        k: props[k] for k in ("os_distro", "os_version", "architecture", "hw_disk_bus", "hw_vif_model")
    } == {
        "os_distro": "centos",
        "os_version": "7",
        "architecture": "x86_64",
        "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio",
    }
    assert props["hw_qemu_guest_agent"] == "yes" and "hw_firmware_type" not in props
    assert sorted(image.tags) == sorted(
        [
            f"factory:spec={spec.name}",
            f"factory:build-id={build.build_id}",
            f"factory:image-sha256={qcow2.sha256}",
        ]
    )
    assert image.hash_algo == "sha512"
    assert image.hash_value == hashlib.sha512(qcow2.path.read_bytes()).hexdigest()
    # The stored bytes are the export, read back through the API.
    assert hashlib.sha256(c.image.download_image(image).content).hexdigest() == qcow2.sha256
    members = {m.member_id: m.status for m in c.image.members(image)}
    assert members == {"proj-a": "accepted", "proj-b": "pending"}
    doc = manifest(build, "openstack")
    assert doc["state"] == "complete" and doc["places"]["local"]["image_id"] == image.id


def test_uefi_sets_firmware_type(tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path) -> None:
    spec = write_spec(tmp_path / "spec", name="os-uefi", vm={"firmware": "uefi"}, openstack=os_section())
    pub = publish(spec, gated_build(spec, tmp_path / "build", sealed_disk))
    props = stored(glance, pub.images[0].id)
    assert (props["hw_firmware_type"], props["os_distro"]) == ("uefi", "debian")  # the testbed


def test_rerun_is_idempotent(tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path) -> None:
    spec = write_spec(tmp_path / "spec", name="os-rerun", openstack=os_section())
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    first = publish(spec, build)
    second = publish(spec, build)
    assert second.images[0].id == first.images[0].id
    assert second.stats["bytes_sent"] == 0
    status = OpenstackTarget().status(ctx_for(spec, build))
    assert (status.state, [(i.id, i.state) for i in status.images]) == (
        "complete",
        [(first.images[0].id, "active")],
    )
    assert [i.id for i in spec_images(glance, spec.name)] == [first.images[0].id]


def test_killed_upload_leaves_no_queued_image(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-killed", openstack=os_section())
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    # What a run killed during the upload leaves: the image record, tagged, without its data.
    body = {
        "name": f"os-killed-{build.build_id}",
        "disk_format": "qcow2",
        "container_format": "bare",
        "tags": [f"factory:spec={spec.name}", f"factory:build-id={build.build_id}"],
    }
    left = requests.post(f"{glance}/v2/images", json=body, timeout=30).json()
    assert left["status"] == "queued"
    pub = publish(spec, build)
    images = spec_images(glance, spec.name)
    assert [(i.id, i.status) for i in images] == [(pub.images[0].id, "active")]
    assert left["id"] not in {i.id for i in images}
    assert any(r["id"] == left["id"] for r in manifest(build, "openstack")["retired"])


def test_never_two_active_images_for_a_build(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-twice", openstack=os_section())
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    qcow2 = next(a for a in exported(build) if a.format == "qcow2")
    tags = [
        f"factory:spec={spec.name}",
        f"factory:build-id={build.build_id}",
        f"factory:image-sha256={qcow2.sha256}",
    ]
    # Two complete uploads of this build (e.g. two runs racing before either recorded its image).
    c = conn(glance)
    twins = [
        c.image.create_image(
            name=f"twin-{n}", filename=str(qcow2.path), disk_format="qcow2", container_format="bare",
            tags=tags, wait=True, allow_duplicates=True,
        ).id
        for n in (1, 2)
    ]  # fmt: skip
    pub = publish(spec, build)
    left = [(i.id, i.status) for i in spec_images(glance, spec.name)]
    assert len(left) == 1 and left[0] == (pub.images[0].id, "active") and left[0][0] in twins
    assert pub.stats["bytes_sent"] == 0


def test_retire_hides_then_deletes_never_latest(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-retire", openstack=os_section())
    ids = []
    for n in range(1, 5):
        build = gated_build(spec, tmp_path / f"b{n}", sealed_disk, build_id=f"2026010{n}T000000Z-000{n}")
        pub = publish(spec, build)
        ids.append(pub.images[0].id)
        if n == 3:
            # Build 1 is beyond keep=2: hidden, not yet deleted.
            assert pub.retired.hidden == (ids[0],) and pub.retired.removed == ()
            assert conn(glance).image.get_image(ids[0]).is_hidden is True
            # Users launch build 2 by the `latest` tag: it must survive every retirement.
            conn(glance).image.add_tag(ids[1], "latest")
    # Build 4: build 1 (hidden before) is deleted, build 2 stays (latest), build 3 within keep.
    assert pub.retired.removed == (ids[0],)
    left = {i.id: i.is_hidden for i in spec_images(glance, spec.name)}
    assert left == {ids[1]: False, ids[2]: False, ids[3]: False}


def test_several_clouds_raw(
    tmp_path: Path, sealed_disk: Path, glance: str, glance_raw_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"east": glance, "ceph": glance_raw_only})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    section = os_section(
        disk_format="raw", clouds=[{"cloud": "east"}, {"cloud": "ceph", "visibility": "community"}]
    )
    spec = write_spec(tmp_path / "spec", name="os-multi", openstack=section)
    pub = publish(spec, gated_build(spec, tmp_path / "build", sealed_disk))
    assert [i.location for i in pub.images] == ["east", "ceph"]
    assert conn(glance_raw_only).image.get_image(pub.images[1].id).visibility == "community"
    assert conn(glance).image.get_image(pub.images[0].id).disk_format == "raw"


def test_unverified_build_uploads_nothing(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-unverified", openstack=os_section())
    with pytest.raises(VerifyError) as info:
        publish(spec, gated_build(spec, tmp_path / "build", sealed_disk, verified=False))
    assert info.value.exit_code == EXIT_VERIFY
    assert spec_images(glance, spec.name) == []


def test_cloud_missing_from_clouds_yaml(tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path) -> None:
    # The first cloud is fine: nothing may be uploaded there either while the second is unknown.
    section = os_section(clouds=[{"cloud": "local"}, {"cloud": "prod-east"}])
    spec = write_spec(tmp_path / "spec", name="os-nocloud", openstack=section)
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(
        OpenstackError, match=r"cloud 'prod-east' is not in clouds.yaml .*fix openstack.clouds"
    ) as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_OPENSTACK and "\n" not in info.value.message
    assert spec_images(glance, spec.name) == []
    assert manifest(build, "openstack")["state"] == "failed"


def test_wrong_credentials(
    tmp_path: Path, sealed_disk: Path, glance_keystone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"secure": glance_keystone})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    spec = write_spec(tmp_path / "spec", name="os-creds", openstack=os_section(clouds=[{"cloud": "secure"}]))
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    with pytest.raises(OpenstackError, match=r"cloud 'secure': credentials refused \(HTTP 401\)") as info:
        publish(spec, build)
    assert info.value.exit_code == EXIT_OPENSTACK and "\n" not in info.value.message
    assert manifest(build, "openstack")["state"] == "failed"


def test_glance_refuses_the_disk_format(
    tmp_path: Path, sealed_disk: Path, glance_raw_only: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"ceph": glance_raw_only})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    spec = write_spec(tmp_path / "spec", name="os-refused", openstack=os_section(clouds=[{"cloud": "ceph"}]))
    with pytest.raises(OpenstackError, match=r"cloud ceph: Glance refused the qcow2 image: .*qcow2") as info:
        publish(spec, gated_build(spec, tmp_path / "build", sealed_disk))
    assert info.value.exit_code == EXIT_OPENSTACK and "\n" not in info.value.message
    assert spec_images(glance_raw_only, spec.name) == []


def test_promote_only_target_openstack_cli(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-cli", openstack=os_section())
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    argv = ["promote", str(build.path), "--spec", str(spec.source), "--only-target", "openstack", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    (image,) = out["targets"]["openstack"]["images"]
    assert image["location"] == "local" and image["state"] == "active"
    promote = BuildDir.open(build.path).stage("promote")
    assert promote is not None and promote["result"]["targets"]["openstack"]["images"][0]["id"] == image["id"]


def test_only_target_not_in_spec(
    tmp_path: Path, sealed_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path / "spec", name="os-none", export=["qcow2"])
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    code = cli.main(["promote", str(build.path), "--spec", str(spec.source), "--only-target", "openstack"])
    assert code == 2
    assert "--only-target openstack: the spec has no openstack section" in capsys.readouterr().err


def test_target_interface() -> None:
    from factory import targets
    from factory.targets.base import Target

    assert isinstance(targets.get("openstack"), Target) and isinstance(OpenstackTarget(), Target)


def test_compliance_result_travels_as_image_properties(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    from factory.core import digest
    from factory.stages.compliance import compliance

    profile = "xccdf_org.imagefactory_profile_testbed"
    spec = write_spec(
        tmp_path / "spec", name="os-scap", openstack=os_section(), compliance={"profile": profile}
    )
    build = gated_build(spec, tmp_path / "build", sealed_disk)
    sealed = digest.sha256_file(sealed_disk)
    counts = {"passed": 3, "failed": 0, "waived": 0, "other": 0}
    result = {
        "passed": True,
        "profile": profile,
        "image_sha256": sealed,
        "counts": counts,
        "report_sha256": "r" * 64,
    }
    build.record_stage(compliance.STAGE, "ok", result=result, inputs=compliance.stage_inputs(spec, sealed))
    props = stored(glance, publish(spec, build).images[0].id)
    assert props["factory_compliance_profile"] == profile
    assert (props["factory_compliance_passed"], props["factory_compliance_failed"]) == ("3", "0")
    assert props["factory_compliance_report_sha256"] == "r" * 64
    assert props["factory_compliance_image_sha256"] == sealed


def test_no_passing_compliance_scan_publishes_nothing(
    tmp_path: Path, sealed_disk: Path, glance: str, clouds: Path
) -> None:
    spec = write_spec(
        tmp_path / "spec",
        name="os-scap-missing",
        openstack=os_section(),
        compliance={"profile": "xccdf_org.imagefactory_profile_testbed"},
    )
    build = gated_build(spec, tmp_path / "build", sealed_disk)  # sealed and exported, never scanned
    with pytest.raises(VerifyError, match="compliance scan has not passed"):
        publish(spec, build)
    assert spec_images(glance, "os-scap-missing") == []
