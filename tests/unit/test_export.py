"""Export with the real qemu-img: every format converts back to the exact bytes of the source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory import cli
from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import ExportError
from factory.host import tools
from factory.spec import ExportFormat, Spec
from factory.stages.export import export
from factory.stages.seal.seal import SealResult

SIZE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 64 MiB qcow2 with a pattern at the start, in the middle and in the last MiB; and its raw sha256."""
    work = tmp_path_factory.mktemp("src")
    disk = work / "sealed.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, str(SIZE)], timeout=60)
    tools.run(
        ["qemu-io", "-f", "qcow2",
         "-c", "write -P 0xab 0 1M", "-c", "write -P 0x5c 40M 3M", "-c", f"write -P 0x01 {SIZE - 65536} 64k",
         disk],
        timeout=60,
    )  # fmt: skip
    raw = work / "sealed.raw"
    tools.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", disk, raw], timeout=60)
    return disk, digest.sha256_file(raw)


def make_spec(tmp_path: Path, formats: list[str]) -> Spec:
    return Spec.model_validate(
        {
            "name": "img",
            "os": "centos",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": "t.ks"},
            "export": formats,
            "source": tmp_path / "spec.yaml",
        }
    )


def raw_sha256(path: Path, fmt: str, work: Path) -> str:
    back = work / f"{path.name}.back.raw"
    tools.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", path, back], timeout=120)
    try:
        return digest.sha256_file(back)
    finally:
        back.unlink()


@pytest.mark.parametrize(
    ("fmt", "qemu_name"),
    [
        pytest.param("raw", "raw", id="raw"),
        pytest.param("qcow2", "qcow2", id="qcow2"),
        pytest.param("vmdk", "vmdk", id="vmdk-streamoptimized"),
        pytest.param("vhd", "vpc", id="vhd-fixed"),
    ],
)
def test_format_round_trips(tmp_path: Path, image: tuple[Path, str], fmt: str, qemu_name: str) -> None:
    disk, raw_sha = image
    src_sha = digest.sha256_file(disk)
    out = tmp_path / "out"
    result = export.export(make_spec(tmp_path, [fmt]), disk, src_sha, out)
    (art,) = result.artifacts
    assert art.path == out / f"img.{'vhd' if fmt == 'vhd' else fmt}"
    assert (art.format, art.source_sha256) == (fmt, src_sha)
    assert art.sha256 == digest.sha256_file(art.path)
    assert art.size == art.path.stat().st_size
    assert raw_sha256(art.path, qemu_name, tmp_path) == raw_sha
    info = export.image_info(art.path, qemu_name)
    assert (info["format"], info["virtual-size"]) == (qemu_name, SIZE)
    sums = (out / f"{art.path.name}.sha256").read_text()
    assert sums == f"{art.sha256}  {art.path.name}\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"] == [
        {
            "format": fmt,
            "path": str(art.path),
            "sha256": art.sha256,
            "size": art.size,
            "source_sha256": src_sha,
            "bmap": str(art.bmap) if art.bmap else None,
            "bmap_mapped_bytes": art.bmap_mapped_bytes,
        }
    ]
    bmap = [f"{art.path.name}.bmap"] if fmt == "raw" else []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [art.path.name, f"{art.path.name}.sha256", "manifest.json", *bmap]
    )


def test_raw_block_map_copies_only_used_blocks(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, raw_sha = image
    (art,) = export.export(
        make_spec(tmp_path, ["raw"]), disk, digest.sha256_file(disk), tmp_path / "out"
    ).artifacts
    assert art.bmap == art.path.with_name("img.raw.bmap")
    # The fixture wrote 1 MiB + 3 MiB + 64 KiB of data into a 64 MiB disk: only that is mapped.
    assert art.bmap_mapped_bytes == 4 * 1024 * 1024 + 65536
    # bmaptool checks every mapped range's sha256 from the map while it writes; the copy is the image.
    target = tmp_path / "disk.img"
    written = bmaptool_copy_bytes(art.bmap, art.path, target)
    assert digest.sha256_file(target) == raw_sha
    # Not a dd: what it wrote is the mapped data (plus its log lines), not the 64 MiB.
    assert 4 * 1024 * 1024 <= written < 5 * 1024 * 1024


def bmaptool_copy_bytes(bmap: Path, image: Path, target: Path) -> int:
    """Run `bmaptool copy`; the bytes it passed to write(), from the kernel's I/O accounting.

    A shell runs it and then reads its own /proc/PID/io, which includes the counters of the children it
    has waited for.
    """
    script = 'bmaptool copy --bmap "$1" "$2" "$3" >/dev/null 2>&1 || exit 9; cat /proc/$$/io'
    out = tools.run(["sh", "-c", script, "sh", bmap, image, target], timeout=120).stdout.decode()
    io = dict(line.split(": ") for line in out.splitlines())
    return int(io["wchar"])


def test_raw_block_map_catches_a_changed_image(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    (art,) = export.export(
        make_spec(tmp_path, ["raw"]), disk, digest.sha256_file(disk), tmp_path / "out"
    ).artifacts
    assert art.bmap is not None
    with art.path.open("r+b") as fh:
        fh.write(b"changed")
    proc = tools.run(["bmaptool", "copy", "--bmap", art.bmap, art.path, tmp_path / "t.img"], check=False)
    assert proc.returncode != 0
    assert b"checksum mismatch" in proc.stderr.lower()


def test_format_specific_options(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    result = export.export(
        make_spec(tmp_path, ["qcow2", "vmdk", "vhd", "raw"]), disk, digest.sha256_file(disk), tmp_path / "out"
    )
    by_format = {a.format: a for a in result.artifacts}
    assert list(by_format) == ["qcow2", "vmdk", "vhd", "raw"]
    vmdk = export.image_info(by_format["vmdk"].path, "vmdk")
    assert vmdk["format-specific"]["data"]["create-type"] == "streamOptimized"
    # Fixed VHD: the whole disk plus a 512-byte footer, so Azure's "N MiB + 512" rule holds.
    assert by_format["vhd"].size == SIZE + 512
    # Compressed qcow2 is smaller than the 4 MiB of pattern data written into the source.
    assert by_format["qcow2"].size < 4 * 1024 * 1024


def _assert_nothing_left(out: Path) -> None:
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_image(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"image to export not found"):
        export.export(make_spec(tmp_path, ["raw"]), tmp_path / "nope.qcow2", "0" * 64, tmp_path / "out")
    _assert_nothing_left(tmp_path / "out")


def test_unknown_format(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    # The spec's validator rejects it; a spec built without validation must still not get through.
    spec = make_spec(tmp_path, ["raw"]).model_copy(update={"export": (ExportFormat.RAW, "vdi")})
    with pytest.raises(
        ExportError, match=r"unknown format\(s\) vdi \(known: raw, qcow2, vmdk, vhd, ova, oci, pxe\)"
    ):
        export.export(spec, disk, digest.sha256_file(disk), tmp_path / "out")
    _assert_nothing_left(tmp_path / "out")


def test_source_hash_mismatch(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, _ = image
    with pytest.raises(ExportError, match=r"expected the sealed image's 0{64}"):
        export.export(make_spec(tmp_path, ["raw"]), disk, "0" * 64, tmp_path / "out")
    _assert_nothing_left(tmp_path / "out")


def test_qemu_img_failure_leaves_no_file(tmp_path: Path) -> None:
    # qemu-img info reads it, but converting needs the (missing) backing file: convert fails.
    disk = tmp_path / "broken.qcow2"
    tools.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "/nonexistent/base.raw",
            "-F",
            "raw",
            disk,
            "64M",
        ],
        timeout=60,
    )
    out = tmp_path / "out"
    with pytest.raises(
        ExportError, match=r"qemu-img failed with exit status 1: .*Could not open backing file"
    ):
        export.export(make_spec(tmp_path, ["raw", "qcow2"]), disk, digest.sha256_file(disk), out)
    _assert_nothing_left(out)


def test_vhd_needs_whole_mib(tmp_path: Path) -> None:
    disk = tmp_path / "odd.raw"
    disk.write_bytes(b"\1" * (1024 * 1024 + 512))
    with pytest.raises(ExportError, match=r"virtual size 1049088 is not a whole number of MiB"):
        export.export(make_spec(tmp_path, ["vhd"]), disk, digest.sha256_file(disk), tmp_path / "out")
    _assert_nothing_left(tmp_path / "out")


# --- `factory export BUILD_DIR` ---------------------------------------------------------------------------


def sealed_result(image: Path, sha: str) -> SealResult:
    return SealResult(
        sealed_image=image, source_sha256=sha, sealed_sha256=sha, recheck_passed=True, removed=()
    )


def _build(tmp_path: Path, disk: Path, *, sealed: bool) -> tuple[Path, Path]:
    (tmp_path / "t.ks").write_text("text\n")
    spec = tmp_path / "img.yaml"
    spec.write_text(
        "name: img\nos: testbed\nmedia: {builtin: testbed, volume_label: X}\nkickstart: {path: t.ks}\n"
        "export: [qcow2, raw]\n"
    )
    build = BuildDir.create(tmp_path / "build", "img")
    if sealed:
        build.record_stage("seal", "ok", result=sealed_result(disk, digest.sha256_file(disk)))
    return build.path, spec


def test_export_command_records_the_stage(tmp_path: Path, image: tuple[Path, str]) -> None:
    disk, raw_sha = image
    build_path, spec = _build(tmp_path, disk, sealed=True)
    assert cli.main(["export", str(build_path), "--spec", str(spec)]) == 0
    stage = BuildDir.open(build_path).stage("export")
    assert stage is not None and stage["status"] == "ok"
    arts = stage["result"]["artifacts"]
    assert [a["format"] for a in arts] == ["qcow2", "raw"]
    assert all(a["source_sha256"] == digest.sha256_file(disk) for a in arts)
    assert digest.sha256_file(build_path / "export" / "img.raw") == raw_sha


def test_export_command_without_sealed_image(tmp_path: Path, image: tuple[Path, str]) -> None:
    build_path, spec = _build(tmp_path, image[0], sealed=False)
    assert cli.main(["export", str(build_path), "--spec", str(spec)]) == 2
    assert not (build_path / "export").exists()
