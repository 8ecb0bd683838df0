"""The export format `oci`: a container base image from the sealed disk, checked with the container profile.

    stage_oci(spec, image, source_sha256, staging, build_id=...) -> OciStaged

1. the root filesystem, read offline (rootfs.py), minus what only a booting machine needs
   (spec `container.exclude`, default below: kernel and modules, boot loader, initramfs, firmware, device
   nodes, machine-id, host keys, logs, caches);
2. one reproducible layer (layer.py), mtimes clamped to SOURCE_DATE_EPOCH, or when that is unset to
   the sealed image's own mtime (every file in it is older; files the extraction made now are clamped);
3. the acceptance suite on that tree with testinfra's chroot backend and the container profile
   (no kernel, no host keys, no machine-id, packages, passwords, no private keys); a failure is exit 6;
4. the OCI image layout `<name>.oci/` and `<name>.docker.tar` (skopeo), both staged under temp names:
   the caller renames them into place with the other formats, or removes them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from factory.core.record import atomic_write_text
from factory.errors import ExportError, FactoryError, VerifyError
from factory.host import tools
from factory.spec import Spec
from factory.stages.export.oci import image, layer, rootfs
from factory.vm import accel as accel_mod

# What a container image leaves out, for every OS (the EL 7 container kickstarts remove the same things).
COMMON_EXCLUDE: tuple[str, ...] = (
    "/boot/*",
    "/lib/modules/*",
    "/usr/lib/modules/*",
    "/lib/firmware/*",
    "/usr/lib/firmware/*",
    "/lost+found",
    "/dev/*",
    "/proc/*",
    "/sys/*",
    "/run/*",
    "/tmp/*",
    "/var/tmp/*",
    "/etc/machine-id",
    "/var/lib/dbus/machine-id",
    "/etc/ssh/ssh_host_*",
    "/var/log/*",
    "/var/cache/*",
    "/etc/fstab",
    "/root/anaconda-ks.cfg",
    "/root/original-ks.cfg",
)
DEFAULT_EXCLUDE: dict[str, tuple[str, ...]] = {
    "testbed": (*COMMON_EXCLUDE, "/etc/extlinux*", "/initrd.img*", "/vmlinuz*"),
    # EL 7: grub2 and dracut configuration, the boot-time firewall and tuned make no sense in a container.
    "centos": (*COMMON_EXCLUDE, "/etc/grub2.cfg", "/etc/grub.d/*", "/etc/dracut.conf.d/*", "/var/lib/yum/*"),
    "oraclelinux": (
        *COMMON_EXCLUDE,
        "/etc/grub2.cfg",
        "/etc/grub.d/*",
        "/etc/dracut.conf.d/*",
        "/var/lib/yum/*",
    ),
}
DEFAULT_CMD = {"testbed": ("/bin/sh",), "centos": ("/bin/bash",), "oraclelinux": ("/bin/bash",)}
LABEL_SOURCE_SHA256 = "org.image-factory.source-sha256"
VERIFY_TIMEOUT_S = 600


@dataclass(frozen=True)
class ContainerCheck:
    passed: bool
    junit: Path
    log: Path
    passed_count: int
    failed_count: int
    skipped_count: int


@dataclass(frozen=True)
class OciStaged:
    layout_tmp: Path
    archive_tmp: Path
    manifest_digest: str
    layer: layer.Layer
    check: ContainerCheck
    epoch: int
    reader: str
    seconds: float


def exclude_patterns(spec: Spec) -> tuple[str, ...]:
    base = spec.container.exclude if spec.container.exclude is not None else DEFAULT_EXCLUDE[spec.os]
    return tuple(dict.fromkeys((*base, *spec.container.exclude_extra)))


def source_epoch(image_path: Path) -> int:
    """SOURCE_DATE_EPOCH when set (reproducible-builds.org), else the sealed image's mtime."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise ExportError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds")
        return int(value)
    return int(image_path.stat().st_mtime)


# Facts of other stages (the compliance scan's, via compliance.publish_metadata) travel as labels with this
# prefix: they are part of the image config, so of its digest.
FACTORY_LABEL_PREFIX = "io.image-factory."


def labels(
    spec: Spec, *, build_id: str, created: int, source_sha256: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {
        **{f"{FACTORY_LABEL_PREFIX}{k}": v for k, v in sorted((extra or {}).items())},
        "org.opencontainers.image.created": image.rfc3339(created),
        "org.opencontainers.image.version": build_id,
        "org.opencontainers.image.revision": spec.digest(),
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.source": spec.container.source or str(spec.source),
        LABEL_SOURCE_SHA256: source_sha256,
        **spec.container.labels,
    }


def prune(tree: Path, patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Remove the excluded paths from the extracted tree (the chroot check must see the container's tree)."""
    _, dropped = layer.walk(tree, patterns)
    for path in dropped:
        image.remove_tree(tree / path.lstrip("/"))
    return tuple(dropped)


def check_tree(spec: Spec, tree: Path, out: Path) -> ContainerCheck:
    """tests/images with the container profile, through testinfra's chroot backend, on `tree`."""
    from factory.stages.verify.verify import parse_junit, suite_dir

    out.mkdir(parents=True, exist_ok=True)
    junit, log = out / "junit.xml", out / "pytest.log"
    junit.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(suite_dir()),
        f"--spec={spec.source.resolve()}",
        # testinfra reads a chroot://PATH host spec's path as a host name: name the backend instead.
        "--connection=chroot",
        f"--hosts={tree.resolve()}",
        "--profile=container",
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
    ]
    try:
        proc = tools.run(argv, timeout=VERIFY_TIMEOUT_S, check=False, cwd=suite_dir().parent.parent)
    except FactoryError as exc:
        raise VerifyError(f"the container profile did not finish: {exc.message}") from None
    atomic_write_text(log, (proc.stdout + proc.stderr).decode(errors="replace"))
    if proc.returncode not in (0, 1):
        raise VerifyError(
            f"the container profile could not run (pytest exit status {proc.returncode}); see {log}",
            artifacts=(log,),
        )
    summary = parse_junit(junit)
    return ContainerCheck(
        passed=proc.returncode == 0 and summary.failed == 0 and summary.errors == 0,
        junit=junit,
        log=log,
        passed_count=summary.passed,
        failed_count=summary.failed + summary.errors,
        skipped_count=summary.skipped,
    )


def stage_oci(
    spec: Spec,
    image_path: Path,
    source_sha256: str,
    staging: Path,
    *,
    build_id: str,
    report_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> OciStaged:
    """Build the OCI layout and docker-archive under `staging` (a fresh temp folder the caller owns).

    The container profile's JUnit report and log go to `report_dir` (kept when it fails: they say why).
    """
    started = time.monotonic()
    work = staging / "work"
    work.mkdir(parents=True)
    tree = work / "rootfs"
    read = rootfs.extract(image_path, tree, work, accel=accel_mod.resolve(spec.vm.accel))
    dropped = prune(tree, exclude_patterns(spec))
    epoch = source_epoch(image_path)
    built = layer.write(tree, work / "layer.tar.gz", epoch=epoch)
    built = dataclasses.replace(built, excluded=dropped)
    check = check_tree(spec, tree, report_dir)
    if not check.passed:
        raise VerifyError(
            f"{spec.name}: the container root filesystem failed the container profile "
            f"({check.failed_count} failed); see {check.log}",
            artifacts=(check.junit, check.log),
        )
    cfg = image.ImageConfig(
        env=spec.container.env,
        cmd=spec.container.cmd or DEFAULT_CMD[spec.os],
        labels=labels(spec, build_id=build_id, created=epoch, source_sha256=source_sha256, extra=extra),
        created=epoch,
        history=f"image-factory: root filesystem of {spec.name} sealed image sha256:{source_sha256}",
    )
    layout = staging / "layout"
    written = image.write_layout(layout, built, cfg, ref=build_id)
    archive = staging / "docker.tar"
    image.docker_archive(layout, build_id, archive, f"{spec.name}:{build_id}")
    shutil.rmtree(work)
    return OciStaged(
        layout_tmp=layout,
        archive_tmp=archive,
        manifest_digest=written.manifest_digest,
        layer=built,
        check=check,
        epoch=epoch,
        reader=read.reader,
        seconds=round(time.monotonic() - started, 2),
    )
