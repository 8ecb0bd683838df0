"""The export stage: convert the sealed image with qemu-img into each format the spec asks for.

Formats and who takes them:
  raw    AWS EBS direct upload / VM Import, bare metal (dd). Sparse on disk, with a block map
         (`bmaptool create`, `<name>.raw.bmap`): `bmaptool copy` writes only the mapped blocks to a
         physical disk and checks each range's sha256.
  qcow2  OpenStack (Glance) and KVM/libvirt; compressed (-c), so it is the small one to ship.
  vmdk   VMware and AWS VM Import: streamOptimized (compressed, the subformat AWS accepts and OVAs carry).
  vhd    Azure and AWS VM Import: *fixed* VHD (Azure rejects dynamic ones) with `force_size`, so the
         virtual size is exactly the source's, not rounded to a CHS geometry (Azure wants whole MiB).
  ova    VMware (vSphere import, ovftool): the streamOptimized VMDK in an OVF 1.0 package (ova.py);
         made from the vmdk conversion, which is converted for it even when vmdk itself is not exported.

Every artifact is written under a temp name, checked (qemu-img info: format and virtual size match the
source; qemu-img check where the format has one), hashed, and only then renamed into place, all together:
a failed export leaves none of its files behind. `manifest.json` lists every artifact, and the image's
CycloneDX SBOM (`<spec>.cdx.json`, from the packages verify recorded) with its sha256.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factory.core import digest
from factory.core.record import atomic_write_text, to_jsonable
from factory.errors import ExportError, ToolError
from factory.host import tools
from factory.spec import ExportFormat, Spec
from factory.stages.export import ova

if TYPE_CHECKING:
    from factory.stages.verify.inventory import Inventory

# Conversions are disk-bound and qcow2/vmdk compression is CPU-bound: two at a time suits a small host.
WORKERS = 2
# A 20 GiB image compresses in minutes under load; an hour means something is wrong.
CONVERT_TIMEOUT_S = 3600
INFO_TIMEOUT_S = 120
CHECK_TIMEOUT_S = 1800
MIB = 1024 * 1024
# `qemu-img check` exit status when the format has no consistency check (raw, vpc).
CHECK_UNSUPPORTED = 63


@dataclass(frozen=True)
class _Format:
    qemu_name: str  # the driver name qemu-img uses (-O / -f)
    extension: str
    options: tuple[str, ...]


FORMATS: dict[ExportFormat, _Format] = {
    ExportFormat.RAW: _Format("raw", "raw", ()),
    ExportFormat.QCOW2: _Format("qcow2", "qcow2", ("-c",)),
    ExportFormat.VMDK: _Format("vmdk", "vmdk", ("-o", "subformat=streamOptimized")),
    ExportFormat.VHD: _Format("vpc", "vhd", ("-o", "subformat=fixed,force_size=on")),
    # Not a qemu-img format: packed by ova.py around the vmdk conversion.
    ExportFormat.OVA: _Format("ova", "ova", ()),
}


@dataclass(frozen=True)
class Artifact:
    format: str
    path: Path
    sha256: str
    size: int
    # The sealed image it was made from (the promotion gate follows this link).
    source_sha256: str
    # raw only: its block map for `bmaptool copy` (bmap-tools), and how many bytes that copy writes.
    bmap: Path | None = None
    bmap_mapped_bytes: int | None = None


@dataclass(frozen=True)
class OciInfo:
    """`export: [oci]`: the image's digests and how it was made (the artifacts hold the two files)."""

    ref: str  # the tag inside the layout (the build id)
    manifest_digest: str
    layer_digest: str
    layer_diff_id: str
    layer_size: int
    entries: int
    excluded: tuple[str, ...]
    epoch: int  # SOURCE_DATE_EPOCH the mtimes were clamped to
    reader: str  # debugfs or virt-tar-out
    check_passed: bool
    check_junit: Path
    seconds: float


@dataclass(frozen=True)
class ExportResult:
    artifacts: tuple[Artifact, ...]
    manifest: Path
    oci: OciInfo | None = None
    sbom: Path | None = None


def image_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """`qemu-img info --output=json`; with `fmt` the file must open as that format."""
    argv: list[str | Path] = ["qemu-img", "info", "--output=json"]
    if fmt is not None:
        argv += ["-f", fmt]
    out = tools.run([*argv, path], timeout=INFO_TIMEOUT_S).stdout
    info: dict[str, Any] = json.loads(out)
    return info


# Formats made from the root filesystem rather than converted by qemu-img.
TREE_FORMATS = (ExportFormat.OCI, ExportFormat.PXE)


def _requested(spec: Spec) -> tuple[ExportFormat, ...]:
    """The spec's formats, in order, without repeats; an unknown one is an error."""
    formats = tuple(dict.fromkeys(spec.export))
    if not formats:
        raise ExportError(f"{spec.source}: export: no formats given")
    unknown = [str(f) for f in formats if f not in FORMATS and f not in TREE_FORMATS]
    if unknown:
        known = ", ".join([*FORMATS, *TREE_FORMATS])
        raise ExportError(f"export: unknown format(s) {', '.join(unknown)} (known: {known})")
    return formats


def export(
    spec: Spec,
    image: Path,
    source_sha256: str,
    out_dir: Path,
    *,
    build_id: str = "local",
    iso: Path | None = None,
    labels: Mapping[str, str] | None = None,
    inventory: Inventory | None = None,
) -> ExportResult:
    """Convert `image` (the sealed disk, whose sha256 is `source_sha256`) to every format in spec.export.

    `build_id` tags the OCI image (its ref in the layout and its version label); `iso` is the install medium
    the build used, which the PXE tree is made from; `inventory` the packages verify recorded, written as
    the SBOM.
    """
    all_formats = _requested(spec)
    if ExportFormat.PXE in all_formats and iso is None:
        raise ExportError(f"{spec.source}: export: pxe needs the build's install medium (the media stage)")
    formats = tuple(f for f in all_formats if f in FORMATS)
    if not image.is_file():
        raise ExportError(f"{image}: image to export not found")
    actual = digest.sha256_file(image)
    if actual != source_sha256:
        # The gate links artifacts to the sealed image by this hash: never record a wrong link.
        raise ExportError(f"{image}: sha256 is {actual}, expected the sealed image's {source_sha256}")
    try:
        source = image_info(image)
    except ToolError as exc:
        raise ExportError(f"{image}: qemu-img cannot read the image: {exc}") from None
    src_format, size = str(source["format"]), int(source["virtual-size"])
    if ExportFormat.VHD in formats and size % MIB:
        raise ExportError(f"{image}: virtual size {size} is not a whole number of MiB, which Azure VHDs need")
    out_dir.mkdir(parents=True, exist_ok=True)
    # The OVA wraps the vmdk conversion: convert it too, kept only if vmdk was asked for.
    conversions = tuple(f for f in formats if f is not ExportFormat.OVA)
    if ExportFormat.OVA in formats and ExportFormat.VMDK not in conversions:
        conversions += (ExportFormat.VMDK,)
    oci_staging = out_dir / f".{spec.name}.oci.tmp.d"
    pxe_staging = out_dir / f".{spec.name}.pxe.tmp.d"
    with (
        _staging(out_dir, spec.name, (*conversions, *(f for f in formats if f not in conversions))) as staged,
        _staged_dir(oci_staging),
        _staged_dir(pxe_staging),
    ):
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(
                    _convert_and_check,
                    image,
                    src_format=src_format,
                    size=size,
                    fmt=fmt,
                    tmp=tmp,
                    final=final,
                    source_sha256=source_sha256,
                )
                for fmt, (tmp, final) in staged.items()
                if fmt in conversions
            ]
            # Wait for all (no conversion left running), then report the first failure.
            done = [f.exception() for f in futures]
        failures = [e for e in done if e is not None]
        if failures:
            err = failures[0]
            if isinstance(err, ExportError):
                raise err
            raise ExportError(f"export of {image.name} failed: {err}") from err
        converted = {ExportFormat(f.result().format): f.result() for f in futures}
        if ExportFormat.OVA in formats:
            converted[ExportFormat.OVA] = _pack_ova(spec, staged, source, source_sha256)
        placed = [(converted[f], staged[f][0]) for f in formats]
        info = None
        if ExportFormat.OCI in all_formats:
            info, oci_placed = _stage_oci(
                spec, image, source_sha256, out_dir, oci_staging, build_id=build_id, labels=labels or {}
            )
            placed += oci_placed
        if iso is not None and ExportFormat.PXE in all_formats:
            placed.append(_stage_pxe(spec, iso, source_sha256, out_dir, pxe_staging))
        for art, tmp in placed:
            _place(art, tmp)
    artifacts = tuple(art for art, _ in placed)
    manifest = out_dir / "manifest.json"
    doc: dict[str, Any] = {
        "spec": spec.name,
        "source_sha256": source_sha256,
        "artifacts": to_jsonable(list(artifacts)),
        **({} if info is None else {"oci": to_jsonable(info)}),
    }
    sbom_path = _write_sbom(spec, inventory, out_dir, build_id, doc)
    atomic_write_text(manifest, json.dumps(doc, indent=2) + "\n")
    return ExportResult(artifacts=artifacts, manifest=manifest, oci=info, sbom=sbom_path)


def _write_sbom(
    spec: Spec, inventory: Inventory | None, out_dir: Path, build_id: str, manifest: dict[str, Any]
) -> Path | None:
    """The CycloneDX SBOM of the sealed image (its sha256 is the metadata component's hash), entered in the
    manifest under "sbom"; None when verify recorded no inventory."""
    from factory.stages.verify import sbom

    if inventory is None:
        return None
    path = out_dir / f"{spec.name}.cdx.json"
    source_sha256 = manifest["source_sha256"]
    sha = sbom.write(path, inventory, name=spec.name, version=build_id, image_sha256=source_sha256)
    atomic_write_text(path.with_name(path.name + ".sha256"), f"{sha}  {path.name}\n")
    manifest["sbom"] = {
        "path": str(path),
        "sha256": sha,
        "format": f"CycloneDX {sbom.SCHEMA.to_version()} JSON",
        "components": len(inventory.packages),
        "source_sha256": source_sha256,
    }
    return path


def _place(art: Artifact, tmp: Path) -> None:
    """Rename a checked artifact (and its block map) into place and write its .sha256 file."""
    if art.bmap is not None:
        os.replace(_bmap_tmp(tmp), art.bmap)
    remove_path(art.path)  # an OCI layout is a folder: it cannot be renamed over an old one
    os.replace(tmp, art.path)
    if art.path.is_file():
        atomic_write_text(art.path.with_name(art.path.name + ".sha256"), f"{art.sha256}  {art.path.name}\n")


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _staged_dir(path: Path) -> Iterator[Path]:
    """A staging folder, fresh on entry (a killed run's leftovers go) and removed on any exit."""
    remove_path(path)
    try:
        yield path
    finally:
        remove_path(path)


def _stage_pxe(
    spec: Spec, iso: Path, source_sha256: str, out_dir: Path, staging: Path
) -> tuple[Artifact, Path]:
    from factory.stages.export import pxe
    from factory.stages.validate.flatten import flatten_for_spec

    staging.mkdir()
    tree = pxe.stage_pxe(spec, iso, flatten_for_spec(spec).text, staging)
    # The tree is the medium plus the kickstart the verified build was installed with; its link to the
    # build is the sealed image's hash like every other artifact (the gate follows it).
    art = Artifact(
        format=str(ExportFormat.PXE),
        path=out_dir / f"{spec.name}.pxe",
        sha256=tree.digest,
        size=tree.size,
        source_sha256=source_sha256,
    )
    return art, tree.path


def _stage_oci(
    spec: Spec,
    image: Path,
    source_sha256: str,
    out_dir: Path,
    staging: Path,
    *,
    build_id: str,
    labels: Mapping[str, str],
) -> tuple[OciInfo, list[tuple[Artifact, Path]]]:
    from factory.stages.export.oci.build import stage_oci

    staging.mkdir()
    st = stage_oci(
        spec,
        image,
        source_sha256,
        staging,
        build_id=build_id,
        report_dir=out_dir / "oci-verify",
        extra=labels,
    )
    layout = out_dir / f"{spec.name}.oci"
    archive = out_dir / f"{spec.name}.docker.tar"
    info = OciInfo(
        ref=build_id,
        manifest_digest=st.manifest_digest,
        layer_digest=st.layer.digest,
        layer_diff_id=st.layer.diff_id,
        layer_size=st.layer.size,
        entries=st.layer.entries,
        excluded=st.layer.excluded,
        epoch=st.epoch,
        reader=st.reader,
        check_passed=st.check.passed,
        check_junit=st.check.junit,
        seconds=st.seconds,
    )
    # The layout's "sha256" is its image manifest digest: what a registry and the gate know it by.
    oci_art = Artifact(
        format=str(ExportFormat.OCI),
        path=layout,
        sha256=st.manifest_digest.removeprefix("sha256:"),
        size=st.layer.size,
        source_sha256=source_sha256,
    )
    archive_art = Artifact(
        format="docker-archive",
        path=archive,
        sha256=digest.sha256_file(st.archive_tmp),
        size=st.archive_tmp.stat().st_size,
        source_sha256=source_sha256,
    )
    return info, [(oci_art, st.layout_tmp), (archive_art, st.archive_tmp)]


def _pack_ova(
    spec: Spec, staged: dict[ExportFormat, tuple[Path, Path]], source: dict[str, Any], source_sha256: str
) -> Artifact:
    vmdk_tmp = staged[ExportFormat.VMDK][0]
    tmp, final = staged[ExportFormat.OVA]
    size = int(source["virtual-size"])
    # Guest data in the disk: what the source holds (its allocation), never more than the capacity.
    populated = min(int(source.get("actual-size") or size), size)
    sha = ova.pack(spec, ova.Disk(vmdk_tmp, size, populated), tmp)
    return Artifact(
        format=str(ExportFormat.OVA),
        path=final,
        sha256=sha,
        size=tmp.stat().st_size,
        source_sha256=source_sha256,
    )


@contextlib.contextmanager
def _staging(
    out_dir: Path, name: str, formats: tuple[ExportFormat, ...]
) -> Iterator[dict[ExportFormat, tuple[Path, Path]]]:
    """Temp and final names per format; the temps are removed on any exit (renamed ones are gone already)."""
    staged = {}
    for fmt in formats:
        final = out_dir / f"{name}.{FORMATS[fmt].extension}"
        staged[fmt] = (final.with_name(f".{final.name}.tmp"), final)
    try:
        yield staged
    finally:
        for tmp, _ in staged.values():
            for path in (tmp, _bmap_tmp(tmp)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _bmap_tmp(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + ".bmap")


def _block_map(tmp: Path, final: Path) -> tuple[Path, int]:
    """`bmaptool create` for a staged raw file; returns the map's final path and the bytes it maps.

    The map is made from the staged file itself (qemu-img writes raw sparse, so its holes are the unused
    blocks), and is renamed into place with the raw file or not at all.
    """
    bmap = _bmap_tmp(tmp)
    tools.run(["bmaptool", "create", "-o", bmap, tmp], timeout=CONVERT_TIMEOUT_S)
    try:
        root = ET.parse(bmap).getroot()
        mapped = int((root.findtext("MappedBlocksCount") or "").strip())
        block = int((root.findtext("BlockSize") or "").strip())
        image_size = int((root.findtext("ImageSize") or "").strip())
    except (ET.ParseError, ValueError) as exc:
        raise ExportError(f"{final.name}: bmaptool wrote an unreadable block map: {exc}") from None
    if image_size != tmp.stat().st_size:
        raise ExportError(
            f"{final.name}: block map says {image_size} bytes, the image has {tmp.stat().st_size}"
        )
    return final.with_name(final.name + ".bmap"), mapped * block


def _convert_and_check(
    image: Path, *, src_format: str, size: int, fmt: ExportFormat, tmp: Path, final: Path, source_sha256: str
) -> Artifact:
    spec = FORMATS[fmt]
    tools.run(
        ["qemu-img", "convert", "-f", src_format, "-O", spec.qemu_name, *spec.options, image, tmp],
        timeout=CONVERT_TIMEOUT_S,
    )
    # -f: a fixed VHD has no header magic and would otherwise be probed as raw.
    info = image_info(tmp, spec.qemu_name)
    if info.get("format") != spec.qemu_name or int(info.get("virtual-size", -1)) != size:
        raise ExportError(
            f"{final.name}: qemu-img reports format {info.get('format')} and virtual size "
            f"{info.get('virtual-size')}, expected {spec.qemu_name} and {size}"
        )
    check = tools.run(["qemu-img", "check", "-f", spec.qemu_name, tmp], timeout=CHECK_TIMEOUT_S, check=False)
    if check.returncode not in (0, CHECK_UNSUPPORTED):
        lines = (check.stdout + check.stderr).decode(errors="replace").strip().splitlines()
        raise ExportError(f"{final.name}: qemu-img check failed: {' | '.join(lines[-3:])}")
    bmap, mapped = _block_map(tmp, final) if fmt is ExportFormat.RAW else (None, None)
    return Artifact(
        format=str(fmt),
        path=final,
        sha256=digest.sha256_file(tmp),
        size=tmp.stat().st_size,
        source_sha256=source_sha256,
        bmap=bmap,
        bmap_mapped_bytes=mapped,
    )
