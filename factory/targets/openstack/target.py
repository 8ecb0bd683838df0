"""The OpenStack target: one Glance image per cloud (clouds.yaml entry, optionally a region), with the
properties Nova and users rely on, tags binding it to the spec / build / image sha256, Glance's own
os_hash_value checked against the file, members added (and accepted where the spec says so), and the
spec's older images beyond `keep` hidden first, deleted on a later run.

    every cloud opened (credentials, endpoint) before any upload -> per cloud:
    this build's images (by tag): drop queued/saving leftovers of a killed upload and extra copies
    -> upload if none is active -> check the hash -> members -> retire

Re-running after a kill finds the build's images by tag, so it never leaves two active images for a build.
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from typing import Any, ClassVar

import openstack
from keystoneauth1 import exceptions as ksa_exceptions
from openstack import exceptions as os_exceptions

from factory.errors import FactoryError, OpenstackError
from factory.spec import Firmware, Openstack, OpenstackCloud, Spec
from factory.stages.compliance import compliance
from factory.targets.base import (
    Artifact,
    Published,
    PublishedImage,
    Retired,
    Status,
    TargetContext,
    TargetManifest,
)

log = logging.getLogger("factory.targets.openstack")
KEY = "openstack"
OS_DISTRO = {"centos": "centos", "oraclelinux": "ol", "testbed": "debian"}
UNFINISHED = ("queued", "saving", "uploading", "importing")
CHUNK = 4 * 1024 * 1024


def _cfg(spec: Spec) -> Openstack:
    if spec.openstack is None:
        raise OpenstackError(f"{spec.source}: the spec has no openstack section")
    return spec.openstack


def image_name(ctx: TargetContext, cfg: Openstack) -> str:
    return cfg.image_name.format(name=ctx.spec.name, build_id=ctx.build.build_id, date=ctx.created_date)


def place_name(cloud: OpenstackCloud) -> str:
    return f"{cloud.cloud}/{cloud.region}" if cloud.region else cloud.cloud


def tag(key: str, value: str) -> str:
    return f"factory:{key}={value}"


def open_cloud(name: str, region: str | None) -> Any:
    """A connection to a clouds.yaml entry, its credentials checked by one cheap call."""
    try:
        conn = openstack.connect(cloud=name, region_name=region)
        conn.image.get_endpoint()
        next(iter(conn.image.images(limit=1)), None)
    except os_exceptions.ConfigException:
        raise OpenstackError(
            f"OpenStack cloud {name!r} is not in clouds.yaml (looked in $OS_CLIENT_CONFIG_FILE, "
            "./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml): "
            "add it or fix openstack.clouds[].cloud"
        ) from None
    except (ksa_exceptions.Unauthorized, os_exceptions.HttpException) as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        if status in (401, 403) or isinstance(exc, ksa_exceptions.Unauthorized):
            raise OpenstackError(
                f"OpenStack cloud {name!r}: credentials refused (HTTP {status or 401}): "
                "fix its auth in clouds.yaml"
            ) from None
        raise OpenstackError(f"OpenStack cloud {name!r}: the image service answered {_short(exc)}") from None
    except (ksa_exceptions.ClientException, os_exceptions.SDKException) as exc:
        raise OpenstackError(
            f"OpenStack cloud {name!r}: cannot reach the image service: {_short(exc)}"
        ) from None
    return conn


def _short(exc: BaseException) -> str:
    """The first line of an SDK error, without the HTML entities Glance puts in its messages."""
    text = html.unescape(str(exc)).replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def file_hash(path: Any, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class OpenstackTarget:
    key: ClassVar[str] = KEY
    label: ClassVar[str] = "Glance images"

    def configured(self, spec: Spec) -> bool:
        return spec.openstack is not None

    def artifact_format(self, spec: Spec) -> str:
        return _cfg(spec).disk_format

    # -- publish ------------------------------------------------------------------------------------

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published:
        cfg = _cfg(ctx.spec)
        if artifact.format != cfg.disk_format:
            raise OpenstackError(f"OpenStack publishes the {cfg.disk_format} export, not {artifact.format}")
        manifest = TargetManifest.load(ctx, KEY, image_sha256=artifact.sha256)
        manifest.set_state("running")
        try:
            # Every cloud is opened first: a missing cloud or refused credentials uploads nothing anywhere.
            conns = {place_name(c): open_cloud(c.cloud, c.region) for c in cfg.clouds}
            images: list[PublishedImage] = []
            removed: list[str] = []
            hidden: list[str] = []
            kept: list[str] = []
            sent, seconds = 0, 0.0
            for cloud in cfg.clouds:
                where = place_name(cloud)
                started = time.monotonic()
                image, uploaded = self._ensure(
                    ctx, cfg=cfg, cloud=cloud, conn=conns[where], artifact=artifact, manifest=manifest
                )
                if uploaded:
                    sent += artifact.size
                    seconds += time.monotonic() - started
                self._share(ctx, cloud, conns[where], image, manifest)
                ret = self._retire(
                    ctx, cfg=cfg, cloud=cloud, conn=conns[where], keep=cfg.keep, manifest=manifest
                )
                removed += ret.removed
                hidden += ret.hidden
                kept += ret.kept
                images.append(
                    PublishedImage(
                        location=where,
                        id=image.id,
                        name=image.name,
                        state=image.status,
                        extra={"visibility": str(image.visibility), "disk_format": cfg.disk_format},
                    )
                )
        except FactoryError as exc:
            manifest.set_state("failed", exc.message)
            raise
        except (os_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
            message = f"OpenStack: {_short(exc)}"
            manifest.set_state("failed", message)
            raise OpenstackError(message) from None
        manifest.set_state("complete")
        return Published(
            target=KEY,
            images=tuple(images),
            retired=Retired(target=KEY, removed=tuple(removed), hidden=tuple(hidden), kept=tuple(kept)),
            manifest=manifest.path,
            stats={"bytes_sent": sent, "upload_seconds": round(seconds, 2)},
        )

    def _build_images(self, ctx: TargetContext, conn: Any) -> list[Any]:
        """This build's images in a cloud, hidden ones too (a retire may have hidden none of them, but a
        user may have)."""
        found = {}
        for hidden in (False, True):
            for image in conn.image.images(tag=[tag("build-id", ctx.build.build_id)], is_hidden=hidden):
                found[image.id] = image
        return sorted(found.values(), key=lambda i: str(i.created_at), reverse=True)

    def _ensure(
        self,
        ctx: TargetContext,
        *,
        cfg: Openstack,
        cloud: OpenstackCloud,
        conn: Any,
        artifact: Artifact,
        manifest: TargetManifest,
    ) -> tuple[Any, bool]:
        where = place_name(cloud)
        keep = None
        for image in self._build_images(ctx, conn):
            ours = tag("image-sha256", artifact.sha256) in (image.tags or [])
            if keep is None and image.status == "active" and ours:
                keep = image
                continue
            # A killed upload (queued/saving), a failed one, another export of this build, or a second copy.
            why = image.status if image.status in UNFINISHED else "extra copy of this build"
            ctx.emit(KEY, "cleanup", f"{where}: deleting image {image.id} ({why}) left by an earlier run")
            conn.image.delete_image(image, ignore_missing=True)
            manifest.add_retired(where, image.id, "deleted", f"left by an earlier run ({why})")
        if keep is not None:
            self._check_hash(conn, keep, artifact, where)
            manifest.update_place(where, image_id=keep.id, state="active")
            ctx.emit(KEY, "upload", f"{where}: image {keep.id} exists from an earlier run")
            return keep, False
        name = image_name(ctx, cfg)
        manifest.update_place(where, image_id=None, state="uploading", image_name=name)
        ctx.emit(KEY, "upload", f"{where}: uploading {artifact.path.name} as {name}", 0, artifact.size)
        try:
            image = conn.image.create_image(
                name=name,
                filename=str(artifact.path),
                disk_format=cfg.disk_format,
                container_format="bare",
                disable_vendor_agent=False,
                allow_duplicates=True,
                wait=True,
                timeout=cfg.timeout,
                # The SDK hashes the file (md5 + sha256) and checks Glance's md5 after the upload;
                # _check_hash below checks Glance's multihash (sha512) too.
                validate_checksum=True,
                tags=self._tags(ctx, artifact),
                visibility="shared" if cloud.share_with else cloud.visibility,
                min_disk=ctx.spec.vm.disk_gib,
                min_ram=cfg.min_ram_mib,
                **self._properties(ctx, cfg, artifact),
            )
        except (os_exceptions.SDKException, ksa_exceptions.ClientException) as exc:
            self._drop_unfinished(ctx, conn, where, manifest)
            raise OpenstackError(
                f"OpenStack cloud {where}: Glance refused the {cfg.disk_format} image: {_short(exc)}; "
                "nothing was left behind (check the cloud's accepted disk formats, or openstack.disk_format)"
            ) from None
        ctx.emit(KEY, "upload", f"{where}: image {image.id} active", artifact.size, artifact.size)
        manifest.update_place(where, image_id=image.id, state="uploaded")
        self._check_hash(conn, image, artifact, where)
        manifest.update_place(where, image_id=image.id, state="active")
        return image, True

    def _drop_unfinished(self, ctx: TargetContext, conn: Any, where: str, manifest: TargetManifest) -> None:
        for image in self._build_images(ctx, conn):
            if image.status != "active":
                conn.image.delete_image(image, ignore_missing=True)
                manifest.add_retired(where, image.id, "deleted", "upload failed")

    def _check_hash(self, conn: Any, image: Any, artifact: Artifact, where: str) -> None:
        """Glance's os_hash_value (multihash, sha512 by default) against the file we uploaded."""
        image = conn.image.get_image(image)
        algo, value = image.hash_algo, image.hash_value
        if not algo or not value:
            raise OpenstackError(f"OpenStack cloud {where}: image {image.id} has no os_hash_value to check")
        ours = file_hash(artifact.path, algo)
        if ours != value:
            conn.image.delete_image(image, ignore_missing=True)
            raise OpenstackError(
                f"OpenStack cloud {where}: image {image.id} stored {algo} {value[:16]}…, the file has "
                f"{ours[:16]}…; the image was deleted"
            )

    def _tags(self, ctx: TargetContext, artifact: Artifact) -> list[str]:
        return [
            tag("spec", ctx.spec.name),
            tag("build-id", ctx.build.build_id),
            tag("image-sha256", artifact.sha256),
        ]

    def _properties(self, ctx: TargetContext, cfg: Openstack, artifact: Artifact) -> dict[str, str]:
        props = {
            "os_distro": cfg.os_distro or OS_DISTRO[ctx.spec.os],
            "os_version": cfg.os_version,
            "architecture": "x86_64",
            "hw_disk_bus": cfg.hw_disk_bus,
            "hw_vif_model": cfg.hw_vif_model,
            "hw_qemu_guest_agent": "yes" if cfg.hw_qemu_guest_agent else "no",
            "factory_spec": ctx.spec.name,
            "factory_build_id": ctx.build.build_id,
            "factory_image_sha256": artifact.sha256,
        }
        if ctx.spec.vm.firmware is Firmware.UEFI:
            props["hw_firmware_type"] = "uefi"
        # The compliance scan's result, bound to the image's sha256, when the spec asks for one.
        props.update(
            {f"factory_{k.replace('-', '_')}": v for k, v in compliance.labels(ctx.spec, ctx.build).items()}
        )
        return props

    def _share(
        self, ctx: TargetContext, cloud: OpenstackCloud, conn: Any, image: Any, manifest: TargetManifest
    ) -> None:
        if not cloud.share_with:
            return
        where = place_name(cloud)
        present = {m.member_id: m for m in conn.image.members(image)}
        for project in cloud.share_with:
            if project not in present:
                conn.image.add_member(image, member_id=project)
            status = present[project].status if project in present else "pending"
            if project in cloud.accept_as and status != "accepted":
                member_conn = open_cloud(cloud.accept_as[project], cloud.region)
                member_conn.image.update_member(project, image, status="accepted")
                status = "accepted"
            ctx.emit(KEY, "share", f"{where}: {image.id} shared with {project} ({status})")
        manifest.update_place(where, shared_with=list(cloud.share_with), accepted=sorted(cloud.accept_as))

    # -- retire / status ----------------------------------------------------------------------------

    def _spec_images(self, ctx: TargetContext, conn: Any) -> list[Any]:
        found = {}
        for hidden in (False, True):
            for image in conn.image.images(tag=[tag("spec", ctx.spec.name)], is_hidden=hidden):
                found[image.id] = image
        return list(found.values())

    def _retire(
        self,
        ctx: TargetContext,
        *,
        cfg: Openstack,
        cloud: OpenstackCloud,
        conn: Any,
        keep: int,
        manifest: TargetManifest,
    ) -> Retired:
        """Other builds' images beyond keep: hidden first; one already hidden is deleted. An image carrying
        the `latest` tag is never touched."""
        where = place_name(cloud)
        build_tag = tag("build-id", ctx.build.build_id)
        removed: list[str] = []
        hidden: list[str] = []
        kept: list[str] = []

        def build_of(image: Any) -> str:
            return next((t for t in image.tags or [] if t.startswith("factory:build-id=")), "")

        others = sorted(
            (
                i
                for i in self._spec_images(ctx, conn)
                if build_tag not in (i.tags or []) and i.status == "active"
            ),
            key=build_of,
            reverse=True,
        )
        for i, image in enumerate(others):
            if cfg.latest_tag in (image.tags or []):
                kept.append(image.id)
                continue
            if i < keep - 1:
                kept.append(image.id)
                continue
            if image.is_hidden:
                conn.image.delete_image(image, ignore_missing=True)
                manifest.add_retired(
                    where, image.id, "deleted", f"beyond keep={keep}, hidden by an earlier run"
                )
                removed.append(image.id)
                ctx.emit(KEY, "retire", f"{where}: deleted {image.name}")
            else:
                conn.image.update_image(image, is_hidden=True)
                manifest.add_retired(where, image.id, "hidden", f"beyond keep={keep}")
                hidden.append(image.id)
                ctx.emit(KEY, "retire", f"{where}: hid {image.name} (deleted on a later run)")
        return Retired(target=KEY, removed=tuple(removed), hidden=tuple(hidden), kept=tuple(kept))

    def retire(self, ctx: TargetContext, keep: int) -> Retired:
        cfg = _cfg(ctx.spec)
        manifest = TargetManifest.load(ctx, KEY)
        removed: list[str] = []
        hidden: list[str] = []
        kept: list[str] = []
        for cloud in cfg.clouds:
            conn = open_cloud(cloud.cloud, cloud.region)
            ret = self._retire(ctx, cfg=cfg, cloud=cloud, conn=conn, keep=keep, manifest=manifest)
            removed += ret.removed
            hidden += ret.hidden
            kept += ret.kept
        return Retired(target=KEY, removed=tuple(removed), hidden=tuple(hidden), kept=tuple(kept))

    def status(self, ctx: TargetContext) -> Status:
        cfg = _cfg(ctx.spec)
        manifest = TargetManifest.load(ctx, KEY)
        images = []
        for cloud in cfg.clouds:
            conn = open_cloud(cloud.cloud, cloud.region)
            for image in self._build_images(ctx, conn):
                images.append(PublishedImage(place_name(cloud), image.id, image.name, image.status))
        return Status(target=KEY, state=manifest.state, images=tuple(images))
