"""The export stage: convert the sealed image with qemu-img into each format the spec asks for.

Formats and who takes them:
  raw    AWS EBS direct upload / VM Import, bare metal (dd). Sparse on disk.
  qcow2  OpenStack (Glance) and KVM/libvirt; compressed (-c), so it is the small one to ship.
  vmdk   VMware and AWS VM Import: streamOptimized (compressed, the subformat AWS accepts and OVAs carry).
  vhd    Azure and AWS VM Import: *fixed* VHD (Azure rejects dynamic ones) with `force_size`, so the
         virtual size is exactly the source's, not rounded to a CHS geometry (Azure wants whole MiB).
  ova    VMware (vSphere import, ovftool): the streamOptimized VMDK in an OVF 1.0 package (factory/ova.py);
         made from the vmdk conversion, which is converted for it even when vmdk itself is not exported.

Every artifact is written under a temp name, checked (qemu-img info: format and virtual size match the
source; qemu-img check where the format has one), hashed, and only then renamed into place, all together:
a failed export leaves none of its files behind. `manifest.json` lists every artifact.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory import digest, ova, tools
from factory.errors import ExportError, ToolError
from factory.record import atomic_write_text, to_jsonable
from factory.spec import ExportFormat, Spec

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
    # Not a qemu-img format: packed by factory/ova.py around the vmdk conversion.
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


@dataclass(frozen=True)
class ExportResult:
    artifacts: tuple[Artifact, ...]
    manifest: Path


def image_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """`qemu-img info --output=json`; with `fmt` the file must open as that format."""
    argv: list[str | Path] = ["qemu-img", "info", "--output=json"]
    if fmt is not None:
        argv += ["-f", fmt]
    out = tools.run([*argv, path], timeout=INFO_TIMEOUT_S).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def export(spec: Spec, image: Path, source_sha256: str, out_dir: Path) -> ExportResult:
    """Convert `image` (the sealed disk, whose sha256 is `source_sha256`) to every format in spec.export."""
    formats = tuple(dict.fromkeys(spec.export))  # keep order, drop repeats
    if not formats:
        raise ExportError(f"{spec.source}: export: no formats given")
    unknown = [str(f) for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"export: unknown format(s) {', '.join(unknown)} (known: {', '.join(FORMATS)})")
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
    with _staging(
        out_dir, spec.name, (*conversions, *(f for f in formats if f not in conversions))
    ) as staged:
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
        artifacts = tuple(converted[f] for f in formats)
        for art in artifacts:
            tmp, final = staged[ExportFormat(art.format)]
            os.replace(tmp, final)
            atomic_write_text(final.with_name(final.name + ".sha256"), f"{art.sha256}  {final.name}\n")
    manifest = out_dir / "manifest.json"
    doc = {"spec": spec.name, "source_sha256": source_sha256, "artifacts": to_jsonable(list(artifacts))}
    atomic_write_text(manifest, json.dumps(doc, indent=2) + "\n")
    return ExportResult(artifacts=artifacts, manifest=manifest)


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
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


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
    return Artifact(
        format=str(fmt),
        path=final,
        sha256=digest.sha256_file(tmp),
        size=tmp.stat().st_size,
        source_sha256=source_sha256,
    )
