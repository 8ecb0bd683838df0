"""The OCI image around one layer: config, manifest, index.json, the layout folder; docker-archive via skopeo.

Every JSON document is written canonically (sorted keys, no spaces) so the same layer and the same labels give
the same config, manifest and so the same image digest. `created` is the epoch the layer was clamped to,
not the time of the export, for the same reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.host import tools
from factory.stages.export.oci.layer import Layer

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
SKOPEO_TIMEOUT_S = 1800


@dataclass(frozen=True)
class ImageConfig:
    """What the image says about itself (the spec's `container` section, resolved)."""

    env: tuple[str, ...]  # "KEY=value"
    cmd: tuple[str, ...]
    labels: dict[str, str]
    created: int  # seconds since the epoch
    history: str  # the one history entry's created_by


@dataclass(frozen=True)
class Written:
    layout: Path
    manifest_digest: str
    config_digest: str
    ref: str


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def rfc3339(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_doc(layer: Layer, cfg: ImageConfig) -> dict[str, Any]:
    created = rfc3339(cfg.created)
    return {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": list(cfg.env), "Cmd": list(cfg.cmd), "Labels": dict(sorted(cfg.labels.items()))},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "created_by": cfg.history}],
    }


def _blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def write_layout(layout: Path, layer: Layer, cfg: ImageConfig, ref: str) -> Written:
    """Write an OCI image layout into the (new, empty) folder `layout`; the layer file is moved into it."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
    os.replace(layer.path, blobs / layer.digest.removeprefix("sha256:"))
    config = canonical(config_doc(layer, cfg))
    config_digest = _blob(blobs, config)
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size}],
            "annotations": dict(sorted(cfg.labels.items())),
        }
    )
    manifest_digest = _blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {REF_NAME: ref},
            }
        ],
    }
    (layout / "index.json").write_bytes(canonical(index))
    return Written(layout=layout, manifest_digest=manifest_digest, config_digest=config_digest, ref=ref)


def docker_archive(layout: Path, ref: str, out: Path, name: str) -> None:
    """`skopeo copy oci:LAYOUT:REF docker-archive:OUT:NAME` (for `docker load`)."""
    out.unlink(missing_ok=True)  # skopeo refuses to overwrite a docker-archive
    tools.run(
        ["skopeo", "copy", "--quiet", f"oci:{layout}:{ref}", f"docker-archive:{out}:{name}"],
        timeout=SKOPEO_TIMEOUT_S,
    )


def inspect(layout: Path, ref: str) -> dict[str, Any]:
    """`skopeo inspect oci:LAYOUT:REF`: what a client reads from the layout."""
    out = tools.run(["skopeo", "inspect", f"oci:{layout}:{ref}"], timeout=120).stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
