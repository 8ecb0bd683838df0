"""The vSphere target: the build's OVA becomes one template, named from the spec's pattern, in the named
datacenter / compute / datastore / folder / network; tagged; the spec's templates beyond `keep` removed.

    credentials -> connect -> find every inventory object -> template of this build already there? done
    -> a VM of that name that is not a template (a killed import): destroy it -> CreateImportSpec
    -> ImportVApp -> NFC upload (progress = keep-alive) -> complete -> annotate, firmware -> template
    -> tags -> retire beyond keep

targets/vsphere.json (base.TargetManifest) records each step; the template's name carries the build id, so
a re-run finds its own template in vSphere itself and never makes a second one.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from contextlib import suppress
from typing import Any, ClassVar

from pyVmomi import vim, vmodl

from factory.errors import FactoryError, VsphereError
from factory.spec import Firmware, Spec, Vsphere
from factory.stages.compliance import compliance
from factory.stages.export import ova as ova_format
from factory.targets.base import (
    Artifact,
    Published,
    PublishedImage,
    Retired,
    Status,
    TargetContext,
    TargetManifest,
)
from factory.targets.vsphere import nfc, tags
from factory.targets.vsphere.connection import (
    Placement,
    connect,
    credentials,
    endpoint,
    placement,
    tls_warning,
    wait_task,
)

log = logging.getLogger("factory.targets.vsphere")
KEY = "vsphere"
MARK = "image-factory template"


def _cfg(spec: Spec) -> Vsphere:
    if spec.vsphere is None:
        raise VsphereError(f"{spec.source}: the spec has no vsphere section")
    return spec.vsphere


def template_name(ctx: TargetContext, cfg: Vsphere) -> str:
    return cfg.template_name.format(name=ctx.spec.name, build_id=ctx.build.build_id, date=ctx.created_date)


def annotation(facts: dict[str, str]) -> str:
    return "\n".join([MARK, *(f"factory:{k}={v}" for k, v in facts.items())])


def read_annotation(text: str | None) -> dict[str, str]:
    lines = (text or "").splitlines()
    if not lines or lines[0] != MARK:
        return {}
    return dict(line.removeprefix("factory:").split("=", 1) for line in lines[1:] if "=" in line)


def _where(cfg: Vsphere) -> str:
    return f"{cfg.datacenter}/vm/{cfg.folder.strip('/')}".rstrip("/")


class VsphereTarget:
    key: ClassVar[str] = KEY
    label: ClassVar[str] = "vSphere templates"

    def configured(self, spec: Spec) -> bool:
        return spec.vsphere is not None

    def artifact_format(self, spec: Spec) -> str:
        return "ova"

    # -- publish ------------------------------------------------------------------------------------

    def publish(self, ctx: TargetContext, artifact: Artifact) -> Published:
        cfg = _cfg(ctx.spec)
        if artifact.format != "ova":
            raise VsphereError(f"vSphere imports the ova export, not {artifact.format}")
        manifest = TargetManifest.load(ctx, KEY, image_sha256=artifact.sha256)
        manifest.set_state("running")
        try:
            return self._publish(ctx, cfg, artifact, manifest)
        except FactoryError as exc:
            manifest.set_state("failed", exc.message)
            raise
        except vmodl.MethodFault as exc:
            message = f"vSphere {cfg.url}: {type(exc).__name__}: {exc.msg}"
            manifest.set_state("failed", message)
            raise VsphereError(message) from None

    def _publish(
        self, ctx: TargetContext, cfg: Vsphere, artifact: Artifact, manifest: TargetManifest
    ) -> Published:
        warning = tls_warning(cfg)
        if warning:
            log.warning("%s", warning)
            ctx.emit(KEY, "warning", warning)
        creds = credentials(cfg, ctx.spec.base_dir)
        name = template_name(ctx, cfg)
        where = _where(cfg)
        facts = {
            "spec": ctx.spec.name,
            "build-id": ctx.build.build_id,
            "image-sha256": artifact.sha256,
            # The compliance scan's result (profile, counts, report sha256) when the spec asks for one.
            **compliance.labels(ctx.spec, ctx.build),
        }
        package = nfc.read_ova(artifact.path)
        stats: dict[str, Any] = {"image_bytes": _capacity(package.descriptor)}
        with connect(cfg, creds) as si:
            place = placement(si, cfg)
            manifest.update_place(where, template=name, datastore=cfg.datastore, network=cfg.network)
            vm = self._find(si, place, name)
            if vm is not None and vm.config is not None and vm.config.template:
                if read_annotation(vm.config.annotation).get("image-sha256") == artifact.sha256:
                    ctx.emit(KEY, "import", f"template {name} exists from an earlier run")
                else:
                    # Same build, another export of it: replaced, never a second template.
                    self._destroy(vm, f"template {name} (another export of this build)")
                    vm = None
            elif vm is not None:
                # A VM of our name that never became a template: an import killed half-way.
                ctx.emit(KEY, "cleanup", f"removing {name}, left half-imported by an earlier run")
                self._destroy(vm, f"half-imported VM {name}")
                vm = None
            if vm is None:
                manifest.update_place(where, state="importing")
                started = time.monotonic()
                vm, sent = self._import(ctx, cfg, si, place, package=package, name=name)
                stats.update(bytes_sent=sent, upload_seconds=round(time.monotonic() - started, 2))
                manifest.update_place(where, moref=vm._moId, state="imported", bytes_sent=sent)
            self._finish(ctx, cfg, vm, facts)
            manifest.update_place(where, moref=vm._moId, state="template")
            tagged = self._tag(ctx, cfg, creds, vm, facts)
            manifest.update_place(where, tags=tagged)
            retired = self._retire(ctx, si, place, cfg.keep, manifest, current=name)
            image = PublishedImage(
                location=f"{endpoint(cfg).netloc}/{where}",
                id=vm._moId,
                name=name,
                state="template",
                extra={
                    "datastore": cfg.datastore,
                    "guest_id": str(vm.config.guestId),
                    "tags": ",".join(tagged),
                },
            )
        manifest.set_state("complete")
        return Published(target=KEY, images=(image,), retired=retired, manifest=manifest.path, stats=stats)

    @staticmethod
    def _find(si: Any, place: Placement, name: str) -> Any:
        return si.RetrieveContent().searchIndex.FindChild(entity=place.folder, name=name)

    @staticmethod
    def _destroy(vm: Any, what: str) -> None:
        if str(vm.runtime.powerState) == "poweredOn":
            wait_task(vm.PowerOffVM_Task(), f"power off {what}")
        wait_task(vm.Destroy_Task(), f"remove {what}")

    def _import(
        self, ctx: TargetContext, cfg: Vsphere, si: Any, place: Placement, *, package: nfc.Ova, name: str
    ) -> tuple[Any, int]:
        content = si.RetrieveContent()
        params = vim.OvfManager.CreateImportSpecParams(
            entityName=name,
            diskProvisioning="thin",
            networkMapping=[vim.OvfManager.NetworkMapping(name=ova_format.NETWORK, network=place.network)],
        )
        try:
            res = content.ovfManager.CreateImportSpec(
                ovfDescriptor=package.descriptor,
                resourcePool=place.pool,
                datastore=place.datastore,
                cisp=params,
            )
        except vmodl.MethodFault as exc:
            raise VsphereError(
                f"vSphere rejected the OVF of {package.path.name}: {exc.msg}; nothing was imported"
            ) from None
        if res.error:
            why = "; ".join(_fault_text(e) for e in res.error)
            raise VsphereError(
                f"vSphere rejected the OVF of {package.path.name}: {why}; nothing was imported "
                "(change the spec's ova: settings)"
            )
        lease = place.pool.ImportVApp(spec=res.importSpec, folder=place.folder)
        try:
            nfc.wait_ready(lease, cfg.timeout)
            vm = lease.info.entity
            ctx.emit(KEY, "upload", f"{name}: uploading the disk to {cfg.datastore}")
            sent = nfc.upload(
                lease,
                package,
                list(res.fileItem or []),
                endpoint(cfg),
                verify_tls=not cfg.insecure,
                timeout=cfg.timeout,
                progress=lambda done, total: ctx.emit(KEY, "upload", name, done, total),
            )
            lease.HttpNfcLeaseProgress(percent=100)
            lease.HttpNfcLeaseComplete()
        except BaseException:
            # Abort makes vSphere remove what the import created; the search below covers one that didn't.
            with suppress(Exception):
                lease.HttpNfcLeaseAbort()
            with suppress(Exception):
                left = self._find(si, place, name)
                if left is not None:
                    self._destroy(left, f"half-imported VM {name}")
            raise
        return vm, sent

    def _finish(self, ctx: TargetContext, cfg: Vsphere, vm: Any, facts: dict[str, str]) -> None:
        if vm.config.template:
            return
        firmware = "efi" if ctx.spec.vm.firmware is Firmware.UEFI else "bios"
        spec = vim.vm.ConfigSpec(annotation=annotation(facts))
        if vm.config.firmware != firmware:
            spec.firmware = firmware
        wait_task(vm.ReconfigVM_Task(spec=spec), f"annotate {vm.name}")
        vm.MarkAsTemplate()
        ctx.emit(KEY, "template", f"{vm.name} is a template")

    def _tag(self, ctx: TargetContext, cfg: Vsphere, creds: Any, vm: Any, facts: dict[str, str]) -> list[str]:
        try:
            client = tags.Tagging(endpoint(cfg), creds, verify_tls=not cfg.insecure)
        except tags.Unavailable:
            msg = f"vSphere {cfg.url} has no vAPI tagging endpoint: the facts are in the annotation only"
            log.warning("%s", msg)
            ctx.emit(KEY, "warning", msg)
            return []
        try:
            attached = client.attach({f"factory-{k}": v for k, v in facts.items()}, vm._moId)
        finally:
            client.close()
        return sorted(attached)

    # -- retire / status ----------------------------------------------------------------------------

    def _templates(self, ctx: TargetContext, place: Placement) -> list[tuple[str, Any, dict[str, str]]]:
        """(build id, VM, facts) of every template of this spec in the folder."""
        found = []
        for child in place.folder.childEntity:
            if not isinstance(child, vim.VirtualMachine) or child.config is None or not child.config.template:
                continue
            facts = read_annotation(child.config.annotation)
            if facts.get("spec") == ctx.spec.name and facts.get("build-id"):
                found.append((facts["build-id"], child, facts))
        return sorted(found, key=lambda t: t[0], reverse=True)

    def _retire(
        self,
        ctx: TargetContext,
        si: Any,
        place: Placement,
        keep: int,
        manifest: TargetManifest,
        *,
        current: str,
    ) -> Retired:
        removed, kept = [], []
        others = [t for t in self._templates(ctx, place) if t[1].name != current]
        # This build's template counts as one of `keep`; build ids sort by time.
        for i, (build_id, vm, _) in enumerate(others):
            if i < keep - 1:
                kept.append(vm.name)
                continue
            name = vm.name
            self._destroy(vm, f"template {name}")
            manifest.add_retired(
                _where(_cfg(ctx.spec)), name, "deleted", f"beyond keep={keep} (build {build_id})"
            )
            ctx.emit(KEY, "retire", f"removed template {name}")
            removed.append(name)
        return Retired(target=KEY, removed=tuple(removed), kept=tuple(kept))

    def retire(self, ctx: TargetContext, keep: int) -> Retired:
        cfg = _cfg(ctx.spec)
        manifest = TargetManifest.load(ctx, KEY)
        with connect(cfg, credentials(cfg, ctx.spec.base_dir)) as si:
            return self._retire(ctx, si, placement(si, cfg), keep, manifest, current=template_name(ctx, cfg))

    def status(self, ctx: TargetContext) -> Status:
        cfg = _cfg(ctx.spec)
        manifest = TargetManifest.load(ctx, KEY)
        name = template_name(ctx, cfg)
        with connect(cfg, credentials(cfg, ctx.spec.base_dir)) as si:
            vm = self._find(si, placement(si, cfg), name)
            images: tuple[PublishedImage, ...] = ()
            if vm is not None:
                state = "template" if vm.config.template else "vm (not a template: import unfinished)"
                images = (PublishedImage(location=_where(cfg), id=vm._moId, name=name, state=state),)
        return Status(target=KEY, state=manifest.state, images=images)


def _capacity(descriptor: str) -> int:
    """The disk's virtual size from the OVF (bytes): what a raw upload would have sent."""
    root = ET.fromstring(descriptor)
    disk = root.find(f".//{{{ova_format.OVF}}}Disk")
    return int(disk.get(f"{{{ova_format.OVF}}}capacity", "0")) if disk is not None else 0


def _fault_text(fault: Any) -> str:
    """One line for an import-spec error (pyvmomi hands them over as the faults themselves)."""
    text = getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None)
    if text:
        return str(text)
    kind = type(fault).__name__.rsplit(".", 1)[-1]
    item = getattr(fault, "name", None)
    return f"{kind} {item}" if item else kind
