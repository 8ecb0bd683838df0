"""The registry target: push the build's OCI image with skopeo, tag it, move `latest`, retire old tags.

    auth file checked -> tag <build-id> already holds this digest? (a re-run) : skopeo copy oci:… docker://…
    -> read the tag back, same digest? -> move `latest` (only now: a killed push never moves it) -> retire

Why this is safe to kill and re-run: a registry creates a tag only when its manifest is PUT, and skopeo puts
the manifest after every blob is in; a killed push leaves at most unreferenced blobs (the registry's garbage
collector removes them), never a half-pushed tag. The re-run sees the tag missing (or holding the digest
already) and finishes. Retiring deletes a manifest by digest, which removes *every* tag on it; identical
builds share a digest (the image is reproducible), so a tag is retired only when no kept tag and not
`latest` hold the same digest.

Credentials: skopeo reads them from the auth file (containers-auth.json(5) or docker's config.json) itself;
the factory passes only the file's path, so no secret is in a command line, a log or the manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import ClassVar

from factory.errors import RegistryError
from factory.host import tools
from factory.spec import Registry, Spec
from factory.targets.base import (
    Artifact,
    Published,
    PublishedImage,
    Retired,
    Status,
    TargetContext,
    TargetManifest,
)

KEY = "registry"
BUILD_TAG = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")  # record.new_build_id(): sortable by time
QUERY_TIMEOUT_S = 120
NOT_FOUND = ("manifest unknown", "not found", "name unknown")


def _cfg(spec: Spec) -> Registry:
    if spec.registry is None:
        raise RegistryError(f"{spec.source}: the spec has no registry section")
    return spec.registry


def reference(cfg: Registry, tag: str) -> str:
    return f"docker://{cfg.url}/{cfg.repository}:{tag}"


def auth_args(cfg: Registry, spec: Spec, prefix: str = "") -> list[str]:
    """`--[src-|dest-]authfile` and `--[...]tls-verify` for one skopeo command (prefix: "", "dest-")."""
    args = [f"--{prefix}tls-verify={'true' if cfg.tls_verify else 'false'}"]
    if cfg.auth_file is not None:
        path = cfg.auth_file if cfg.auth_file.is_absolute() else spec.base_dir / cfg.auth_file
        if not path.is_file():
            raise RegistryError(
                f"{spec.source}: registry.auth_file {path} not found (write it with "
                f"`skopeo login --authfile {path} {cfg.url}`)"
            )
        args.append(f"--{prefix}authfile={path}")
    return args


def classify(cfg: Registry, stderr: str) -> RegistryError:
    """One line with the fix, from skopeo's error output (which never holds the credentials)."""
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
    low = stderr.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return RegistryError(
            f"registry {cfg.url} refused the credentials for {cfg.repository} (unauthorized): log in with "
            f"`skopeo login --authfile FILE {cfg.url}` and name FILE in registry.auth_file"
        )
    if "http response to https client" in low:
        return RegistryError(f"registry {cfg.url} speaks plain HTTP: set registry.tls_verify: false")
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "network is unreachable")):
        return RegistryError(f"cannot reach registry {cfg.url}: {text} (check registry.url)")
    if "unsupported" in low or "405" in low or "method not allowed" in low:
        return RegistryError(
            f"registry {cfg.url} does not allow deleting tags ({text}); distribution needs "
            "storage.delete.enabled: true"
        )
    return RegistryError(f"registry {cfg.url}: skopeo failed: {text}")


def layout_ref(layout: Path) -> str:
    """The one image's ref name in an OCI layout the export wrote (index.json, one manifest)."""
    try:
        index = json.loads((layout / "index.json").read_text())
        (entry,) = index["manifests"]
        ref: str = entry["annotations"]["org.opencontainers.image.ref.name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(
            f"{layout}: not the OCI image layout of an export ({exc}): re-run the export"
        ) from None
    return ref


class Skopeo:
    """skopeo against one registry and repository, with the spec's auth file and TLS setting."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.cfg = _cfg(spec)

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        return tools.run(["skopeo", *argv], timeout=timeout, check=False)

    def _must(self, argv: list[str], timeout: float = QUERY_TIMEOUT_S) -> bytes:
        proc = self._run(argv, timeout)
        if proc.returncode != 0:
            raise classify(self.cfg, proc.stderr.decode(errors="replace"))
        return proc.stdout

    def digest(self, tag: str) -> str | None:
        """The manifest digest a tag points to, or None when the registry has no such tag."""
        proc = self._run(["inspect", "--raw", *auth_args(self.cfg, self.spec), reference(self.cfg, tag)], 120)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if any(s in err.lower() for s in NOT_FOUND) and "unauthorized" not in err.lower():
                return None
            raise classify(self.cfg, err)
        return "sha256:" + hashlib.sha256(proc.stdout).hexdigest()

    def tags(self) -> list[str]:
        ref = f"docker://{self.cfg.url}/{self.cfg.repository}"
        proc = self._run(["list-tags", *auth_args(self.cfg, self.spec), ref], QUERY_TIMEOUT_S)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if any(s in err.lower() for s in NOT_FOUND) and "unauthorized" not in err.lower():
                return []  # a repository nothing was pushed to yet
            raise classify(self.cfg, err)
        tags: list[str] = json.loads(proc.stdout).get("Tags") or []
        return tags

    def push(self, layout: Path, ref: str, tag: str, digestfile: Path) -> str:
        """skopeo copy oci:LAYOUT:REF docker://…:TAG; the digest the registry stored."""
        digestfile.unlink(missing_ok=True)
        self._must(
            [
                "copy",
                "--quiet",
                # The layout's manifest as it is: its digest is the one the build recorded.
                "--preserve-digests",
                *auth_args(self.cfg, self.spec, "dest-"),
                "--digestfile",
                str(digestfile),
                f"oci:{layout}:{ref}",
                reference(self.cfg, tag),
            ],
            timeout=self.cfg.timeout,
        )
        pushed = digestfile.read_text().strip()
        digestfile.unlink(missing_ok=True)
        return pushed

    def delete(self, tag: str) -> None:
        self._must(["delete", *auth_args(self.cfg, self.spec), reference(self.cfg, tag)])


class RegistryTarget:
    key: ClassVar[str] = KEY
    label: ClassVar[str] = "container registry"

    def configured(self, spec: Spec) -> bool:
        return spec.registry is not None

    def artifact_format(self, spec: Spec) -> str:
        return "oci"

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published:
        cfg = _cfg(ctx.spec)
        digest = f"sha256:{artifact.sha256}"
        where = f"{cfg.url}/{cfg.repository}"
        manifest = TargetManifest.load(ctx, KEY, image_sha256=artifact.sha256)
        manifest.set_state("running")
        try:
            pushed = self._push(ctx, Skopeo(ctx.spec), artifact, manifest)
            retired = self._retire(ctx, cfg.keep, manifest)
        except RegistryError as exc:
            manifest.set_state("failed", exc.message)
            raise
        manifest.set_state("complete")
        images = (
            PublishedImage(location=where, id=digest, name=ctx.build.build_id),
            PublishedImage(location=where, id=digest, name=cfg.latest_tag),
        )
        return Published(
            target=KEY, images=images, retired=retired, manifest=manifest.path, stats={"pushed": pushed}
        )

    def _push(self, ctx: TargetContext, skopeo: Skopeo, artifact: Artifact, manifest: TargetManifest) -> bool:
        """Tag <build id>, read it back, then move latest; False when the tag held the image already."""
        cfg = skopeo.cfg
        digest = f"sha256:{artifact.sha256}"
        build_tag = ctx.build.build_id
        ref = layout_ref(artifact.path)
        where = f"{cfg.url}/{cfg.repository}"
        scratch = ctx.build.targets_dir / ".registry-digest"
        pushed = skopeo.digest(build_tag) != digest
        if pushed:
            ctx.emit(KEY, "push", f"{where}:{build_tag}")
            got = skopeo.push(artifact.path, ref, build_tag, scratch)
            if got != digest:
                raise RegistryError(f"{where}:{build_tag}: the registry stored {got}, expected {digest}")
        else:
            ctx.emit(KEY, "push", f"{where}:{build_tag} already holds {digest[:19]}…: not pushed again")
        # Read back: `latest` moves only to a tag the registry really serves with this digest.
        if skopeo.digest(build_tag) != digest:
            raise RegistryError(f"{where}:{build_tag} does not hold {digest} after the push")
        manifest.update_place(where, tag=build_tag, digest=digest, pushed=pushed)
        if skopeo.digest(cfg.latest_tag) != digest:
            ctx.emit(KEY, "tag", f"{where}:{cfg.latest_tag} -> {build_tag}")
            skopeo.push(artifact.path, ref, cfg.latest_tag, scratch)
        manifest.update_place(where, latest=cfg.latest_tag)
        return pushed

    def status(self, ctx: TargetContext) -> Status:
        cfg = _cfg(ctx.spec)
        skopeo = Skopeo(ctx.spec)
        where = f"{cfg.url}/{cfg.repository}"
        manifest = TargetManifest.load(ctx, KEY)
        images = []
        for tag in (ctx.build.build_id, cfg.latest_tag):
            found = skopeo.digest(tag)
            if found is not None:
                images.append(PublishedImage(location=where, id=found, name=tag))
        return Status(target=KEY, state=manifest.state, images=tuple(images))

    def retire(self, ctx: TargetContext, keep: int) -> Retired:
        """Delete build tags beyond the newest `keep`, unless a kept tag or `latest` shares the manifest."""
        return self._retire(ctx, keep, TargetManifest.load(ctx, KEY))

    def _retire(self, ctx: TargetContext, keep: int, manifest: TargetManifest) -> Retired:
        cfg = _cfg(ctx.spec)
        skopeo = Skopeo(ctx.spec)
        where = f"{cfg.url}/{cfg.repository}"
        builds = sorted((t for t in skopeo.tags() if BUILD_TAG.match(t)), reverse=True)
        kept_tags, old = builds[:keep], builds[keep:]
        protected = {d for d in (skopeo.digest(t) for t in [*kept_tags, cfg.latest_tag]) if d}
        removed: list[str] = []
        shared: list[str] = []
        for tag in old:
            found = skopeo.digest(tag)
            if found is None:
                continue
            if found in protected:
                shared.append(tag)  # deleting it would delete a kept tag's (or latest's) manifest too
                continue
            ctx.emit(KEY, "retire", f"{where}:{tag}")
            skopeo.delete(tag)
            manifest.add_retired(where, tag, "deleted", f"older than the newest {keep} builds")
            removed.append(tag)
        return Retired(target=KEY, removed=tuple(removed), kept=(*kept_tags, *shared))
