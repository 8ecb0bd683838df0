"""Target boot profiles: boot the image the way each platform the spec publishes to boots it.

    planned(spec) -> ("aws", ...)                  # which target boots a spec calls for
    run_boots(spec, image, out, key, ...) -> tuple[BootResult, ...]

Today's boot (verify.py) uses the build's own machine: virtio disk, the build's NIC, the build key. A
target boot emulates the platform instead and runs the acceptance suite again, plus the checks that
target needs (checks.CHECKS with `boots`), logged in the way the platform lets a user in:

- `aws` (the spec has an `aws` section): SMBIOS as EC2 presents it, so cloud-init's own detection
  (ds-identify, the image's unchanged datasource_list) picks Ec2; the root disk on NVMe, bigger than the
  image (root must grow); another MAC than the build's; IMDSv2 on 169.254.169.254 (profiles.imds)
  serving a fresh public key. The suite logs in as the cloud user with that key, never the build key.
- `metal-bios` / `metal-uefi` (the spec exports for metal: a `pxe` export or section, the bare-metal
  delivery; raw is exported by every spec, so it says nothing about metal): firmware boots on another
  NIC, as root with the build key (bare metal has no metadata service). The testbed installs extlinux,
  which OVMF cannot start: `metal-uefi` of an image without an EFI boot loader is recorded as not
  booted, with that reason, never as passed.

Boots run in parallel threads, at most `parallel` at once (the host's cores: two TCG guests per two
cores). Each writes into out/<boot>/: console.log, junit.xml, pytest.log, facts.json.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from factory.errors import VerifyError
from factory.host import tools
from factory.spec import ExportFormat, Spec
from factory.stages.verify import bootfacts, checks
from factory.vm import qemu
from factory.vm.guest import (
    TargetMachine,
    draining,
    free_port,
    overlay,
    vm_config,
    wait_for_ssh,
    write_ssh_config,
)
from factory.vm.sshkey import BuildKey

# The default_user of each distribution's cloud-init package: who a cloud instance logs in as.
CLOUD_USERS = {"testbed": "debian", "centos": "centos", "oraclelinux": "cloud-user"}
# What the target's disk adds to the image's virtual size: the root must grow into it.
GROW_BYTES = 1 << 30
# A locally administered MAC, other than QEMU's default 52:54:00:12:34:56 (what the build's boots use).
TARGET_MACS = {
    "aws": "0a:3f:5c:11:22:33",
    "openstack": "fa:16:3e:11:22:33",  # Nova's MAC prefix
    "vsphere": "00:50:56:11:22:33",  # VMware's
    "metal-bios": "52:54:00:be:ef:01",
    "metal-uefi": "52:54:00:be:ef:02",
}
TARGET_UUIDS = {
    "openstack": "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b",
    "vsphere": "4210f00d-1234-4abc-8def-0123456789ab",
}
# QEMU's user network (the build's boots and every target boot but aws, whose IMDS needs its own).
USER_NET = "10.0.2.0/24"
# Under TCG a first boot with cloud-init takes a while before the key is in place: sshd refuses the
# login until then, which is not yet a failure.
TARGET_LOGIN_FAILURES = 600
# A target boot is the image's first boot on that platform: cloud-init's four stages (metadata, user,
# host keys, growpart) run before the key is in place, so it gets this many times spec.timeouts.ssh.
FIRST_BOOT_FACTOR = 2


@dataclass(frozen=True)
class BootResult:
    boot: str
    # "passed", "failed", or "not-booted" (with `reason`): a boot that did not happen is never a pass.
    outcome: str
    reason: str = ""
    passed_tests: int = 0
    failed_tests: int = 0
    skipped_tests: int = 0
    errors: int = 0
    ssh_ready_s: float = 0.0
    suite_s: float = 0.0
    total_s: float = 0.0
    junit: Path | None = None
    transcript: Path | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


def exports_for_metal(spec: Spec) -> bool:
    return ExportFormat.PXE in spec.export or spec.pxe is not None


def planned(spec: Spec) -> tuple[str, ...]:
    """The target boots `spec` calls for, in checks.TARGET_BOOTS order: `expect.target_boots` when the
    spec names them, else one per target it publishes to."""
    if spec.expect.target_boots is not None:
        return tuple(b for b in checks.TARGET_BOOTS if b in spec.expect.target_boots)
    wanted = set()
    if spec.aws is not None:
        wanted.add("aws")
    if spec.openstack is not None:
        wanted.add("openstack")
    if spec.vsphere is not None:
        wanted.add("vsphere")
    if exports_for_metal(spec):
        wanted |= {"metal-bios", "metal-uefi"}
    return tuple(b for b in checks.TARGET_BOOTS if b in wanted)


def _fresh_key(folder: Path, boot: str) -> BuildKey:
    """The key the target's metadata hands out: new for every boot, never the build key."""
    private = folder / "metadata-key"
    private.unlink(missing_ok=True)
    private.with_name("metadata-key.pub").unlink(missing_ok=True)
    tools.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"factory-verify-{boot}", "-f", private],
        timeout=30,
    )
    return BuildKey(private=private, public=private.with_name("metadata-key.pub").read_text().strip())


def _virtual_size(image: Path) -> int:
    import json

    info = json.loads(tools.run(["qemu-img", "info", "--output=json", image], timeout=60).stdout)
    return int(info["virtual-size"])


ESP_GUID = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")  # C12A7328-F81F-11D2-BA4B-00A0C93EC93B


def has_esp(head: bytes) -> bool:
    """Does the partition table in `head` (the disk's first MiB) have an EFI system partition? (pure)"""
    if len(head) < 512 or head[510:512] != b"\x55\xaa":
        return False
    types = [head[446 + 16 * i + 4] for i in range(4)]
    if 0xEF in types:
        return True
    if 0xEE not in types or head[512:520] != b"EFI PART":
        return False
    start = int.from_bytes(head[512 + 72 : 512 + 80], "little") * 512
    count = int.from_bytes(head[512 + 80 : 512 + 84], "little")
    size = int.from_bytes(head[512 + 84 : 512 + 88], "little")
    for i in range(count):
        entry = head[start + i * size : start + i * size + 16]
        if len(entry) < 16:
            break
        if entry == ESP_GUID:
            return True
    return False


def image_has_esp(image: Path, workdir: Path) -> bool:
    """The image's partition table, read offline (qemu-img dd of its first MiB): UEFI needs an ESP."""
    head = workdir / "head.raw"
    fmt = _image_format(image)
    tools.run(
        ["qemu-img", "dd", "-f", fmt, "-O", "raw", "bs=1M", "count=1", f"if={image}", f"of={head}"],
        timeout=60,
    )
    try:
        return has_esp(head.read_bytes())
    finally:
        head.unlink(missing_ok=True)


def _image_format(image: Path) -> str:
    import json

    info = json.loads(tools.run(["qemu-img", "info", "--output=json", image], timeout=60).stdout)
    return str(info["format"])


@dataclass(frozen=True)
class _Prepared:
    """One target boot, ready to start: the machine, what it tells the guest, how the suite gets in."""

    machine: TargetMachine
    facts: bootfacts.BootFacts
    key: BuildKey
    user: str
    size: int | None
    # Runs on the boot's overlay before it boots (metal on a sealed disk: a throw-away key for root).
    prepare: Callable[[Path], None] | None = None


@contextlib.contextmanager
def _served(
    boot: str, spec: Spec, image: Path, folder: Path, key: BuildKey, *, sealed: bool
) -> Iterator[_Prepared]:
    """Start what the target serves (its metadata service) for the length of the boot."""
    size = _virtual_size(image)
    if boot == "aws":
        from factory.stages.verify.profiles import imds, smbios

        fresh = _fresh_key(folder, boot)
        mac = TARGET_MACS[boot]
        hostname = f"ip-{imds.GUEST_DHCP_ADDRESS.replace('.', '-')}.ec2.internal"
        instance = imds.Ec2Instance(
            instance_id="i-0f0f0f0f0f0f0f0f0", hostname=hostname, public_key=fresh.public, mac=mac
        )
        with imds.MetadataServer(instance) as server:
            user = CLOUD_USERS[spec.os]
            facts = bootfacts.BootFacts(
                boot=boot,
                user=user,
                public_key=fresh.public,
                hostname=hostname,
                datasource="Ec2",
                # Bigger than the image's whole disk: only a grown root reaches it.
                min_root_bytes=size,
                network=imds.GUEST_NET,
                mac=mac,
                sealed=sealed,
                build_key=key.public,
            )
            machine = TargetMachine(
                name=boot,
                disk_interface="nvme",
                mac=mac,
                netdev_options=server.netdev_options(),
                extra_args=tuple(smbios.aws(instance.instance_id).args()),
            )
            yield _Prepared(machine, facts, fresh, user, size + GROW_BYTES)
            if not server.token_used():
                # Recorded with the boot: cloud-init must have spoken IMDSv2 (the suite checks the result).
                (folder / "imds.txt").write_text("no IMDSv2 token was used\n")
        return
    if boot in ("openstack", "vsphere"):
        from factory.stages.verify.profiles import configdrive, ovfenv, smbios

        fresh = _fresh_key(folder, boot)
        mac = TARGET_MACS[boot]
        uuid = TARGET_UUIDS[boot]
        hostname = f"{spec.name}-{boot}"
        medium = folder / ("config-drive.iso" if boot == "openstack" else "ovf-env.iso")
        if boot == "openstack":
            configdrive.write_config_drive(
                medium,
                configdrive.NovaInstance(uuid=uuid, hostname=hostname, public_key=fresh.public, mac=mac),
            )
            platform, datasource = smbios.openstack(uuid), "ConfigDrive"
        else:
            ovfenv.write_ovf_iso(
                medium,
                ovfenv.OvfInstance(instance_id=uuid, hostname=hostname, public_key=fresh.public, mac=mac),
            )
            platform, datasource = smbios.vsphere(uuid), "OVF"
        facts = bootfacts.BootFacts(
            boot=boot,
            user=CLOUD_USERS[spec.os],
            public_key=fresh.public,
            hostname=hostname,
            datasource=datasource,
            # Nova grows the instance's disk to the flavour's; vSphere keeps the template's.
            min_root_bytes=size if boot == "openstack" else 0,
            network=USER_NET,
            mac=mac,
            sealed=sealed,
            build_key=key.public,
        )
        machine = TargetMachine(name=boot, mac=mac, cdrom=medium, extra_args=tuple(platform.args()))
        yield _Prepared(
            machine, facts, fresh, CLOUD_USERS[spec.os], size + GROW_BYTES if boot == "openstack" else None
        )
        return
    # metal-bios / metal-uefi: no metadata; root with the build key, another NIC.
    mac = TARGET_MACS[boot]
    facts = bootfacts.BootFacts(
        boot=boot, network="10.0.2.0/24", mac=mac, sealed=sealed, build_key=key.public
    )
    machine = TargetMachine(name=boot, mac=mac, firmware="uefi" if boot == "metal-uefi" else "bios")
    if not sealed:
        yield _Prepared(machine, facts, key, "root", None)
        return
    # Sealed: the build key is gone from the disk. Bare metal has no metadata to hand a key, so a
    # throw-away key goes into this boot's overlay only, offline (factory.stages.verify.access).
    from factory.stages.verify import access
    from factory.vm import accel

    fresh = _fresh_key(folder, boot)
    mode = accel.resolve(spec.vm.accel)
    yield _Prepared(
        machine, facts, fresh, "root", None, lambda disk: access.authorize_offline(disk, fresh.public, mode)
    )


def run_boot(
    spec: Spec, image: Path, out: Path, boot: str, key: BuildKey, *, sealed: bool = False
) -> BootResult:
    """One target boot of `image` (never written: an overlay takes the writes) with the suite run in it."""
    from factory.stages.verify.verify import parse_junit, run_suite

    folder = out / boot
    folder.mkdir(parents=True, exist_ok=True)
    transcript, bios_log, junit = folder / "console.log", folder / "bios.log", folder / "junit.xml"
    for stale in (transcript, bios_log, junit):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    if boot == "metal-uefi" and not image_has_esp(image, folder):
        return BootResult(
            boot,
            "not-booted",
            reason="the image has no EFI system partition (the testbed installs extlinux, BIOS only): "
            "UEFI firmware has nothing to start",
        )
    if boot in checks.METADATA_BOOTS and spec.os not in CLOUD_USERS:
        raise VerifyError(f"{spec.os}: no known cloud user for the {boot} boot")
    port = free_port()
    sockets = Path(tempfile.mkdtemp(prefix=f"factory-{boot}-"))
    try:
        with _served(boot, spec, image, folder, key, sealed=sealed) as prep:
            facts_path = bootfacts.write(folder / "facts.json", prep.facts)
            ssh_config = write_ssh_config(
                folder / "ssh_config", prep.key, port, sockets / "ssh-%C", prep.user
            )
            extra: tuple[str, ...] = (f"--boot={boot}", f"--boot-facts={facts_path}")
            if prep.user != "root":
                extra += ("--sudo",)
            with (
                overlay(image, folder / "overlay.qcow2", prep.prepare, size=prep.size) as disk,
                qemu.running(
                    vm_config(spec, disk, port, sockets, bios_log, target=prep.machine), transcript
                ) as vm,
            ):
                ssh_ready_s = wait_for_ssh(
                    vm,
                    ssh_config,
                    port=port,
                    timeout=spec.timeouts.ssh * FIRST_BOOT_FACTOR,
                    transcript=transcript,
                    bios_log=bios_log,
                    max_login_failures=TARGET_LOGIN_FAILURES,
                )
                try:
                    with draining(vm):
                        status, suite_s = run_suite(
                            spec, port, ssh_config, junit, folder / "pytest.log", user=prep.user, extra=extra
                        )
                finally:
                    tools.run(
                        ["ssh", "-F", str(ssh_config), "-O", "exit", "127.0.0.1"], timeout=15, check=False
                    )
    except VerifyError as exc:
        # The boot itself failed (no SSH with the target's key...): a failed boot, with its reason.
        return BootResult(
            boot,
            "failed",
            reason=exc.message,
            total_s=round(time.monotonic() - started, 2),
            transcript=transcript,
        )
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if status not in (0, 1):
        return BootResult(
            boot,
            "failed",
            reason=f"the acceptance suite could not run (pytest exit status {status}); "
            f"see {folder / 'pytest.log'}",
            transcript=transcript,
        )
    s = parse_junit(junit)
    return BootResult(
        boot,
        "passed" if status == 0 and s.failed == 0 and s.errors == 0 else "failed",
        passed_tests=s.passed,
        failed_tests=s.failed,
        skipped_tests=s.skipped,
        errors=s.errors,
        ssh_ready_s=round(ssh_ready_s, 2),
        suite_s=round(suite_s, 2),
        total_s=round(time.monotonic() - started, 2),
        junit=junit,
        transcript=transcript,
    )


def run_boots(
    spec: Spec,
    image: Path,
    out: Path,
    key: BuildKey,
    boots: tuple[str, ...],
    *,
    sealed: bool = False,
    parallel: int = 2,
) -> tuple[BootResult, ...]:
    """Every boot in `boots`, at most `parallel` at once; results in `boots` order."""
    if not boots:
        return ()
    unknown = [b for b in boots if b not in checks.TARGET_BOOTS]
    if unknown:
        raise VerifyError(
            f"unknown target boot(s) {', '.join(unknown)} (known: {', '.join(checks.TARGET_BOOTS)})"
        )
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="target-boot") as pool:
        futures = [pool.submit(run_boot, spec, image, out, b, key, sealed=sealed) for b in boots]
        return tuple(f.result() for f in futures)


def merge_junit(junit: Path, boots: tuple[BootResult, ...]) -> None:
    """Put each target boot's suite into `junit` (today's) as its own <testsuite name="<boot>">, and a
    boot that failed before its suite or did not happen as a testsuite with one failed/skipped case that
    says why, so the report shows every boot."""
    import xml.etree.ElementTree as ET

    from factory.core.record import atomic_write_text

    root = ET.parse(junit).getroot()
    if root.tag != "testsuites":
        wrapper = ET.Element("testsuites")
        wrapper.append(root)
        root = wrapper
    for suite in root.iter("testsuite"):
        suite.set("name", suite.get("name") or checks.DEFAULT_BOOT)
        if suite.get("name") == "pytest":
            suite.set("name", checks.DEFAULT_BOOT)
    for b in boots:
        if b.junit is not None and b.junit.is_file():
            for suite in ET.parse(b.junit).getroot().iter("testsuite"):
                suite.set("name", b.boot)
                for case in suite.iter("testcase"):
                    case.set("classname", f"{b.boot}.{case.get('classname', '')}")
                root.append(suite)
            continue
        failed = b.outcome == "failed"
        suite = ET.SubElement(
            root,
            "testsuite",
            name=b.boot,
            tests="1",
            failures="1" if failed else "0",
            skipped="0" if failed else "1",
            errors="0",
        )
        case = ET.SubElement(suite, "testcase", classname=f"{b.boot}.boot", name="boot")
        ET.SubElement(case, "failure" if failed else "skipped", message=b.reason)
    atomic_write_text(junit, ET.tostring(root, encoding="unicode"))
