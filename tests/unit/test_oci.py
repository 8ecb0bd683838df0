"""The OCI export with the real tools: debugfs reads the disk, skopeo and umoci read the image it makes.

The fixture is a real disk: a DOS partition table, one ext4 filesystem filled with `mkfs.ext4 -d` from a small
root (static busybox as /bin/sh, the host's dpkg-query with its libraries and a dpkg status file, so
testinfra's chroot backend can ask it about packages), plus what a container must not carry: a kernel,
modules, SSH host keys, a machine-id, a log and a device node. Converted to qcow2, like a sealed image.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from factory.core import digest
from factory.errors import EXIT_VERIFY, ExportError, ToolError, VerifyError
from factory.host import tools
from factory.spec import Spec, load_spec
from factory.stages.export import export
from factory.stages.export.oci import layer, rootfs
from tests.rootfs_disk import EPOCH, make_disk, make_tree

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the OCI export writes files as their owners: root")


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the sealed-like qcow2, the tree it was made from)."""
    work = tmp_path_factory.mktemp("oci")
    tree = work / "tree"
    make_tree(tree)
    image = work / "sealed.qcow2"
    make_disk(tree, image)
    return image, tree


def make_spec(tmp_path: Path, required: tuple[str, ...] = ("tree",), **container: object) -> Spec:
    (tmp_path / "t.ks").write_text("text\n")
    spec_file = tmp_path / "spec.yaml"
    doc = {
        "name": "tb",
        "os": "testbed",
        "media": {"builtin": "testbed", "volume_label": "X"},
        "kickstart": {"path": "t.ks"},
        "expect": {"packages_required": list(required), "packages_forbidden": ["systemd-sysv"],
                   "root_password": "hashed", "kernel": "any", "selinux": "absent"},
        "export": ["oci"],
        "container": {"source": "https://example.org/specs/tb.yaml", **container},
    }  # fmt: skip
    spec_file.write_text(json.dumps(doc))  # JSON is YAML: the suite's --spec loads this file
    return Spec.model_validate({**doc, "source": spec_file})


def run_export(
    spec: Spec, image: Path, out: Path, build_id: str = "20261201T000000Z-abcd"
) -> export.ExportResult:
    return export.export(spec, image, digest.sha256_file(image), out, build_id=build_id)


# --- reading the disk offline ------------------------------------------------------------------------------


def test_rootfs_keeps_owners_modes_and_links(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    image, _ = disk
    got = rootfs.extract(image, tmp_path / "root", tmp_path)
    assert (got.reader, got.fstype) == ("debugfs", "ext4")
    su = (tmp_path / "root/usr/bin/su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755  # rdump alone drops the setuid bit
    assert (tmp_path / "root/home/user/notes").stat().st_uid == 1000
    assert stat.S_IMODE((tmp_path / "root/etc/shadow").stat().st_mode) == 0o600
    assert os.readlink(tmp_path / "root/bin/sh") == "busybox"
    assert not os.path.lexists(tmp_path / "root/dev/null")  # device nodes are never written
    assert not (tmp_path / "rootfs-source.raw").exists()


def test_disk_without_one_ext_filesystem_needs_libguestfs(tmp_path: Path) -> None:
    # An xfs or LVM root (EL 7) has no offline userspace reader: libguestfs or a clear error, never a guess.
    blank = tmp_path / "blank.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", blank, "16M"])
    with pytest.raises(ToolError, match=r"not one ext filesystem: reading them offline needs libguestfs"):
        rootfs.extract(blank, tmp_path / "root", tmp_path)


# --- the layer ---------------------------------------------------------------------------------------------


def test_layer_is_reproducible_and_clamped(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    _, tree = disk
    first = layer.write(tree, tmp_path / "a.tar.gz", epoch=EPOCH)
    os.utime(tree / "etc/os-release")  # a newer mtime than the epoch: clamped, so no change
    second = layer.write(tree, tmp_path / "b.tar.gz", epoch=EPOCH)
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    other = layer.write(tree, tmp_path / "c.tar.gz", epoch=EPOCH - 1)
    assert other.diff_id != first.diff_id  # the epoch really is in the bytes
    raw = gzip.decompress((tmp_path / "a.tar.gz").read_bytes())
    assert first.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/")) or names == sorted(names)
    assert all(m.mtime <= EPOCH and m.uname == "" and m.gname == "" for m in members)
    assert all(not ({"atime", "ctime"} & set(m.pax_headers)) for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["usr/bin/su"].mode == 0o4755
    assert (by_name["home/user/notes"].uid, by_name["home/user/notes"].gid) == (1000, 1000)
    assert by_name["usr/bin/data-link"].islnk() and by_name["usr/bin/data-link"].linkname == "usr/bin/data"
    assert "dev/null" not in by_name


def test_exclude_patterns_drop_subtrees(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    _, tree = disk
    kept, dropped = layer.walk(tree, ("/boot/*", "/lib/modules", "/etc/ssh/ssh_host_*"))
    assert "/boot" in kept and not any(p.startswith("/boot/") for p in kept)
    assert not any(p.startswith("/lib/modules") for p in kept)
    assert dropped == ["/boot/vmlinuz-6.1.0-testbed", "/etc/ssh/ssh_host_ed25519_key", "/lib/modules"]


# --- the export format `oci` ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, disk: tuple[Path, Path]
) -> tuple[export.ExportResult, Spec]:
    work = tmp_path_factory.mktemp("oci-export")
    spec = make_spec(work)
    return run_export(spec, disk[0], work / "out"), spec


def test_oci_layout_as_skopeo_reads_it(
    exported: tuple[export.ExportResult, Spec], disk: tuple[Path, Path]
) -> None:
    result, _ = exported
    image_sha = digest.sha256_file(disk[0])
    oci, archive = result.artifacts
    assert (oci.format, archive.format) == ("oci", "docker-archive")
    assert oci.path.name == "tb.oci" and archive.path.name == "tb.docker.tar"
    assert result.oci is not None and result.oci.check_passed
    ref = result.oci.ref
    info = json.loads(tools.run(["skopeo", "inspect", f"oci:{oci.path}:{ref}"]).stdout)
    assert info["Digest"] == f"sha256:{oci.sha256}" == result.oci.manifest_digest
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert info["Layers"] == [result.oci.layer_digest]
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == ref
    assert labels["org.opencontainers.image.title"] == "tb"
    assert labels["org.opencontainers.image.source"] == "https://example.org/specs/tb.yaml"
    assert labels["org.image-factory.source-sha256"] == image_sha
    assert set(labels) >= {
        f"org.opencontainers.image.{k}" for k in ("created", "version", "revision", "title", "source")
    }
    config = json.loads(tools.run(["skopeo", "inspect", "--config", f"oci:{oci.path}:{ref}"]).stdout)
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
    assert config["rootfs"]["diff_ids"] == [result.oci.layer_diff_id]
    assert image_sha in config["history"][0]["created_by"]
    # The docker-archive is what `docker load` reads; skopeo reads it back to the same layer.
    loaded = json.loads(tools.run(["skopeo", "inspect", f"docker-archive:{archive.path}"]).stdout)
    assert loaded["RepoTags"] == [f"tb:{ref}"] or loaded.get("Labels", {}) == labels
    assert archive.sha256 == digest.sha256_file(archive.path)
    excluded = set(result.oci.excluded)
    assert {"/boot/vmlinuz-6.1.0-testbed", "/etc/ssh/ssh_host_ed25519_key", "/etc/machine-id"} <= excluded
    manifest = json.loads(result.manifest.read_text())
    assert manifest["oci"]["manifest_digest"] == result.oci.manifest_digest
    out = result.manifest.parent
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "oci-verify", "tb.docker.tar", "tb.docker.tar.sha256", "tb.oci"
    ]  # fmt: skip


def test_umoci_unpack_round_trip(
    tmp_path: Path, exported: tuple[export.ExportResult, Spec], disk: tuple[Path, Path]
) -> None:
    result, _ = exported
    assert result.oci is not None
    bundle = tmp_path / "bundle"
    tools.run(["umoci", "unpack", "--image", f"{result.artifacts[0].path}:{result.oci.ref}", bundle])
    got = bundle / "rootfs"
    _, tree = disk
    assert (got / "etc/os-release").read_bytes() == (tree / "etc/os-release").read_bytes()
    assert stat.S_IMODE((got / "usr/bin/su").stat().st_mode) == 0o4755
    assert (got / "home/user/notes").stat().st_uid == 1000
    assert (got / "usr/bin/data").stat().st_ino == (got / "usr/bin/data-link").stat().st_ino
    assert (got / "boot").is_dir() and list((got / "boot").iterdir()) == []
    assert not (got / "etc/machine-id").exists() and not (got / "etc/ssh/ssh_host_ed25519_key").exists()
    assert not list((got / "var/log").iterdir())


def test_same_sealed_image_same_digest(
    tmp_path: Path, exported: tuple[export.ExportResult, Spec], disk: tuple[Path, Path]
) -> None:
    result, spec = exported
    again = run_export(spec, disk[0], tmp_path / "again")
    assert again.oci is not None and result.oci is not None
    # Read from the disk a second time (new files, new mtimes): the same image, byte for byte.
    assert again.oci.manifest_digest == result.oci.manifest_digest
    assert again.oci.layer_digest == result.oci.layer_digest


def test_source_date_epoch_sets_created(
    tmp_path: Path, disk: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    result = run_export(make_spec(tmp_path), disk[0], tmp_path / "out")
    assert result.oci is not None and result.oci.epoch == EPOCH
    info = json.loads(
        tools.run(["skopeo", "inspect", f"oci:{result.artifacts[0].path}:{result.oci.ref}"]).stdout
    )
    assert info["Created"] == "2023-11-14T22:13:20Z"


def test_bad_source_date_epoch(
    tmp_path: Path, disk: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ExportError, match=r"SOURCE_DATE_EPOCH='yesterday' is not a number"):
        run_export(make_spec(tmp_path), disk[0], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_container_profile_fails_a_tree_with_kernel_and_keys(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    # Nothing excluded: the kernel, the host key and the machine-id stay, and the chroot check catches each.
    spec = make_spec(tmp_path, exclude=["/dev/*"])
    with pytest.raises(VerifyError, match=r"failed the container profile \(3 failed\)") as err:
        run_export(spec, disk[0], tmp_path / "out")
    assert err.value.exit_code == EXIT_VERIFY
    junit = (tmp_path / "out/oci-verify/junit.xml").read_text()
    for check in ("test_no_kernel", "test_no_host_keys", "test_no_machine_id"):
        assert f'name="{check}' in junit
    # Nothing half-written: only the report that says why.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["oci-verify"]


def test_container_profile_checks_packages(tmp_path: Path, disk: tuple[Path, Path]) -> None:
    spec = make_spec(tmp_path, required=("tree", "vim"))
    with pytest.raises(VerifyError, match=r"\(1 failed\)"):
        run_export(spec, disk[0], tmp_path / "out")
    assert "vim is not installed" in (tmp_path / "out/oci-verify/pytest.log").read_text()


def test_compliance_facts_are_labels_in_the_image_config() -> None:
    """Other stages' facts (the compliance scan's) become io.image-factory.* labels: part of the digest."""
    from factory.stages.export.oci.build import FACTORY_LABEL_PREFIX, labels

    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / "testbed.yaml")
    got = labels(
        spec,
        build_id="b1",
        created=0,
        source_sha256="s" * 64,
        extra={"compliance-profile": "p", "compliance-failed": "0"},
    )
    assert got[f"{FACTORY_LABEL_PREFIX}compliance-profile"] == "p"
    assert got[f"{FACTORY_LABEL_PREFIX}compliance-failed"] == "0"
    assert got["org.opencontainers.image.version"] == "b1"
    assert (
        labels(spec, build_id="b1", created=0, source_sha256="s" * 64)
        .keys()
        .isdisjoint({f"{FACTORY_LABEL_PREFIX}compliance-profile"})
    )
