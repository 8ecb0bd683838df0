"""Registry publishing against a real `docker-registry` on 127.0.0.1: push, read back, pull, tags, retire,
a killed push, and every bad input of the issue (unknown registry, auth refused, missing auth file, gate)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from factory.core.record import BuildDir
from factory.errors import EXIT_PUBLISH, EXIT_VERIFY, RegistryError, SpecError, VerifyError
from factory.host import tools
from factory.spec import Spec
from factory.targets import runner
from factory.targets.base import exported
from factory.targets.registry import RegistryTarget
from tests.rootfs_disk import make_disk, make_tree
from tests.targets.conftest import ctx_for, gated_build, manifest, write_spec
from tests.targets.registry_service import LocalRegistry

pytestmark = [
    pytest.mark.targets,
    pytest.mark.skipif(os.geteuid() != 0, reason="the OCI export writes files as their owners: root"),
]


@pytest.fixture(scope="module")
def rootfs_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("regdisk")
    make_tree(work / "tree")
    make_disk(work / "tree", work / "sealed.qcow2")
    return work / "sealed.qcow2"


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry, rootfs_disk: Path
) -> tuple[Spec, BuildDir]:
    """One verified build with the OCI export, published by several tests (each to its own repository)."""
    work = tmp_path_factory.mktemp("shared")
    spec = reg_spec(work, registry)
    return spec, oci_build(spec, work / "b", rootfs_disk, "20261201T000001Z-0001")


def with_registry(spec: Spec, **over: Any) -> Spec:
    assert spec.registry is not None
    return spec.model_copy(update={"registry": spec.registry.model_copy(update=over)})


def reg_spec(folder: Path, reg: LocalRegistry, **over: Any) -> Spec:
    section = {
        "url": reg.url,
        "repository": "factory/tb",
        "tls_verify": False,
        "auth_file": str(reg.auth_file),
    }
    section.update(over)
    return write_spec(
        folder,
        name="tb",
        export=["oci"],
        expect={
            "packages_required": ["tree"],
            "root_password": "hashed",
            "kernel": "any",
            "selinux": "absent",
        },
        registry=section,
    )


def oci_build(spec: Spec, root: Path, disk: Path, build_id: str, *, verified: bool = True) -> BuildDir:
    return gated_build(spec, root, disk, build_id=build_id, verified=verified)


def skopeo_json(reg: LocalRegistry, *args: str) -> Any:
    out = tools.run(["skopeo", *args[:-1], "--tls-verify=false", f"--authfile={reg.auth_file}", args[-1]])
    return json.loads(out.stdout)


def tag_digest(reg: LocalRegistry, repo: str, tag: str) -> str | None:
    proc = tools.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            f"--authfile={reg.auth_file}",
            f"docker://{reg.url}/{repo}:{tag}",
        ],
        check=False,
    )
    return json.loads(proc.stdout)["Digest"] if proc.returncode == 0 else None


def oci_artifact(build: BuildDir) -> Any:
    return next(a for a in exported(build) if a.format == "oci")


def test_push_tags_latest_and_pulls_back(
    tmp_path: Path,
    registry: LocalRegistry,
    shared: tuple[Spec, BuildDir],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    spec, build = shared[0], shared[1]
    spec = with_registry(spec, repository="factory/push")
    events: list[Any] = []
    published = runner.publish(ctx_for(spec, build, events), [RegistryTarget()])["registry"]
    art = oci_artifact(build)
    digest = f"sha256:{art.sha256}"
    assert [(i.name, i.id) for i in published.images] == [(build.build_id, digest), ("latest", digest)]
    assert tag_digest(registry, "factory/push", build.build_id) == digest
    assert tag_digest(registry, "factory/push", "latest") == digest
    # Pulled back from the registry into a new layout: the same layer, byte for byte.
    pulled = tmp_path / "pulled"
    tools.run(["skopeo", "copy", "--src-tls-verify=false", f"--src-authfile={registry.auth_file}",
               f"docker://{registry.url}/factory/push:latest", f"oci:{pulled}:x"])  # fmt: skip
    local = skopeo_json(registry, "inspect", f"oci:{art.path}:{build.build_id}")
    back = skopeo_json(registry, "inspect", f"oci:{pulled}:x")
    assert back["Layers"] == local["Layers"] and back["Labels"] == local["Labels"]
    record = manifest(build, "registry")
    assert record["state"] == "complete"
    assert record["places"][f"{registry.url}/factory/push"]["digest"] == digest
    # The password is nowhere: not in the target manifest, the build record, the events or any log line.
    seen = json.dumps(record) + build.record_path.read_text() + repr(events) + caplog.text
    assert registry.password not in seen
    assert str(registry.auth_file) in caplog.text  # skopeo got the file's path, which is all it needs


def test_rerun_pushes_nothing_and_keeps_one_tag(
    tmp_path: Path,
    registry: LocalRegistry,
    shared: tuple[Spec, BuildDir],
) -> None:
    spec, build = with_registry(shared[0], repository="factory/rerun"), shared[1]
    first = runner.publish(ctx_for(spec, build), [RegistryTarget()])["registry"]
    again = runner.publish(ctx_for(spec, build), [RegistryTarget()])["registry"]
    assert (first.stats["pushed"], again.stats["pushed"]) == (True, False)
    tags = skopeo_json(registry, "list-tags", f"docker://{registry.url}/factory/rerun")["Tags"]
    assert sorted(tags) == sorted([build.build_id, "latest"])


def test_killed_push_leaves_no_tag_and_rerun_finishes(
    tmp_path: Path,
    registry: LocalRegistry,
    shared: tuple[Spec, BuildDir],
) -> None:
    spec, build = with_registry(shared[0], repository="factory/killed"), shared[1]
    art = oci_artifact(build)
    # The push the target would make, killed (SIGKILL) while it uploads the layer.
    proc = subprocess.Popen(
        ["skopeo", "copy", "--dest-tls-verify=false", f"--dest-authfile={registry.auth_file}",
         f"oci:{art.path}:{build.build_id}", f"docker://{registry.url}/factory/killed:{build.build_id}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.15)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Either nothing was tagged, or the whole image was (the manifest goes last): never a half tag.
    assert tag_digest(registry, "factory/killed", build.build_id) in (None, f"sha256:{art.sha256}")
    assert tag_digest(registry, "factory/killed", "latest") is None
    runner.publish(ctx_for(spec, build), [RegistryTarget()])
    assert tag_digest(registry, "factory/killed", build.build_id) == f"sha256:{art.sha256}"
    assert tag_digest(registry, "factory/killed", "latest") == f"sha256:{art.sha256}"


def test_retire_beyond_keep(tmp_path: Path, registry: LocalRegistry, rootfs_disk: Path) -> None:
    spec = reg_spec(tmp_path, registry, repository="factory/retire", keep=2)
    ids = ["20261201T000010Z-000a", "20261201T000011Z-000b", "20261201T000012Z-000c"]
    results = []
    for build_id in ids:
        build = oci_build(spec, tmp_path / "b", rootfs_disk, build_id)
        results.append(runner.publish(ctx_for(spec, build), [RegistryTarget()])["registry"])
        newest = build
    assert results[-1].retired.removed == (ids[0],)
    assert set(results[-1].retired.kept) == {ids[1], ids[2]}
    tags = skopeo_json(registry, "list-tags", f"docker://{registry.url}/factory/retire")["Tags"]
    assert sorted(tags) == sorted([ids[1], ids[2], "latest"])
    assert tag_digest(registry, "factory/retire", "latest") == f"sha256:{oci_artifact(newest).sha256}"
    assert manifest(newest, "registry")["retired"][0]["id"] == ids[0]


# --- bad input -------------------------------------------------------------------------------------------


def test_auth_refused(tmp_path: Path, registry: LocalRegistry, shared: tuple[Spec, BuildDir]) -> None:
    spec = with_registry(shared[0], repository="factory/refused", auth_file=registry.wrong_auth_file)
    build = shared[1]
    with pytest.raises(
        RegistryError, match=r"refused the credentials for factory/refused \(unauthorized\)"
    ) as err:
        runner.publish(ctx_for(spec, build), [RegistryTarget()])
    assert err.value.exit_code == EXIT_PUBLISH and "\n" not in err.value.message
    assert registry.password not in err.value.message
    assert manifest(build, "registry")["state"] == "failed"
    assert tag_digest(registry, "factory/refused", build.build_id) is None


def test_unknown_registry(tmp_path: Path, registry: LocalRegistry, shared: tuple[Spec, BuildDir]) -> None:
    from factory.vm.guest import free_port

    spec, build = with_registry(shared[0], url=f"127.0.0.1:{free_port()}"), shared[1]
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:\d+: .*check registry\.url"):
        runner.publish(ctx_for(spec, build), [RegistryTarget()])


def test_missing_auth_file(tmp_path: Path, registry: LocalRegistry, shared: tuple[Spec, BuildDir]) -> None:
    spec, build = with_registry(shared[0], auth_file=tmp_path / "nope.json"), shared[1]
    with pytest.raises(
        RegistryError, match=r"registry.auth_file .*nope.json not found \(write it with `skopeo login"
    ):
        runner.publish(ctx_for(spec, build), [RegistryTarget()])


def test_unverified_build_is_not_pushed(tmp_path: Path, registry: LocalRegistry, rootfs_disk: Path) -> None:
    spec = reg_spec(tmp_path, registry, repository="factory/gate")
    build = oci_build(spec, tmp_path / "b", rootfs_disk, "20261201T000023Z-0023", verified=False)
    with pytest.raises(VerifyError) as err:
        runner.publish(ctx_for(spec, build), [RegistryTarget()])
    assert err.value.exit_code == EXIT_VERIFY
    assert tag_digest(registry, "factory/gate", build.build_id) is None


def test_spec_without_oci_export(tmp_path: Path, registry: LocalRegistry) -> None:
    # Said when the spec is read, not after an hour of install.
    with pytest.raises(SpecError, match=r"registry: publishes the oci export: add oci to `export`"):
        write_spec(tmp_path, name="tb", export=["qcow2"], registry={"url": registry.url, "repository": "x"})
