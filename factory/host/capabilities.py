"""What a build needs from the host, each proven by using it: QEMU boots a kernel, xorriso makes a bootable
ISO, debugfs and libguestfs read a disk image offline, and so on.

    check(names) -> tuple[CapabilityStatus, ...]

Finding a binary is not proof (a fresh machine had `guestfish` on PATH and no kernel for its appliance), so
every probe does a small real job in a temporary folder and says what it measured. `factory doctor` runs
them all; `factory build` runs the ones its specs need before it boots anything, reusing a passing verdict
only while the programs and files it used are unchanged (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from factory.core import paths
from factory.core.record import atomic_write_text
from factory.errors import FactoryError
from factory.host import tools
from factory.spec import BootMode, ExportFormat, Firmware, Spec

ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"
LDLINUX_C32 = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
OVMF_FD = "/usr/share/ovmf/OVMF.fd"
PXELINUX_0 = "/usr/lib/PXELINUX/pxelinux.0"
GRUB_EFI_MODULES = "/usr/lib/grub/x86_64-efi"
PXE_BOOT_TIMEOUT_S = 60.0
PROBE_TEXT = b"image-factory capability probe\n"
QEMU_BOOT_TIMEOUT_S = 60.0
UEFI_START_TIMEOUT_S = 60.0
OSCAP_PROBE_PROFILE = "xccdf_org.imagefactory_profile_testbed"


@dataclass(frozen=True)
class Capability:
    name: str
    # "required" by every build, "testbed" (building the testbed medium), "serial" (serial-prompt media
    # remaster), "xfs" (offline reads of non-ext images: EL), "uefi" (vm.firmware: uefi), "compliance"
    # (a spec with a compliance section), "export" (the oci and pxe exports, boot.mode: pxe, a registry).
    needed_for: str
    what: str
    # Host programs or files it uses: what --install-host-deps installs and what the fix names.
    tools: tuple[str, ...]
    probe: Callable[[Path], str]


@dataclass(frozen=True)
class CapabilityStatus:
    name: str
    needed_for: str
    what: str
    ok: bool
    detail: str  # what the probe measured, or why it failed
    seconds: float
    fix: str  # "" when ok
    cached: bool = False


def _probe_qemu(work: Path) -> str:
    from factory.host import supermin
    from factory.vm import accel

    if shutil.which("apt-get") is not None:
        kernel = supermin.appliance_kernel().vmlinuz
    else:
        found = sorted(p for p in Path("/boot").glob("vmlinuz-*") if os.access(p, os.R_OK))
        if not found:
            raise FactoryError("no readable kernel to boot (no apt-get to fetch one, nothing in /boot)")
        kernel = found[-1]
    ok, why = accel.probe(accel.ProbeGuest(kernel), timeout=QEMU_BOOT_TIMEOUT_S, accel="tcg")
    if not ok:
        raise FactoryError(f"QEMU did not boot a kernel under TCG: {why}")
    return f"booted {kernel.name} under TCG to its first console line"


def _probe_qemu_img(work: Path) -> str:
    disk = work / "probe.qcow2"
    tools.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], timeout=60)
    tools.run(["qemu-img", "convert", "-O", "raw", disk, work / "probe.raw"], timeout=60)
    info = json.loads(tools.run(["qemu-img", "info", "--output=json", disk], timeout=60).stdout)
    if info.get("format") != "qcow2" or info.get("virtual-size") != 64 << 20:
        raise FactoryError(f"qemu-img made an unexpected image: {info}")
    return "created, converted and read a qcow2 image"


def _probe_iso(work: Path) -> str:
    import pycdlib

    tree = work / "iso"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(ISOLINUX_BIN, tree / "isolinux" / "isolinux.bin")
    (tree / "probe.txt").write_bytes(PROBE_TEXT)
    iso = work / "probe.iso"
    tools.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-V", "PROBE", "-J", "-R",
         "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
         "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", tree],
        timeout=120,
    )  # fmt: skip
    if not iso.is_file() or iso.stat().st_size == 0:
        raise FactoryError("xorriso exited 0 but wrote no ISO")
    reader = pycdlib.PyCdlib()
    reader.open(str(iso))
    try:
        if reader.eltorito_boot_catalog is None:
            raise FactoryError("xorriso wrote an ISO without an El Torito boot catalog")
    finally:
        reader.close()
    return "made a bootable (El Torito, isolinux) ISO and read it back"


def _probe_ssh(work: Path) -> str:
    key = work / "key"
    tools.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "probe", "-f", key], timeout=60)
    cfg = work / "ssh_config"
    cfg.write_text(f"Host probe\n  HostName 127.0.0.1\n  IdentityFile {key}\n")
    out = tools.run(["ssh", "-G", "-F", cfg, "probe"], timeout=30).stdout.decode()
    if str(key) not in out:
        raise FactoryError("ssh did not read its configuration")
    return "made an ed25519 key; ssh read a config using it"


def _ext4_image(work: Path) -> Path:
    tree = work / "tree"
    (tree / "etc").mkdir(parents=True, exist_ok=True)
    (tree / "etc" / "probe").write_bytes(PROBE_TEXT)
    image = work / "ext4.img"
    if not image.exists():
        tools.run(["mkfs.ext4", "-q", "-F", "-d", tree, "-L", "probe", image, "16M"], timeout=60)
    return image


def _check_read(snap_contents: dict[str, bytes | None], reader: str) -> str:
    got = snap_contents.get("/etc/probe")
    if got is None or got.strip() != PROBE_TEXT.strip():
        raise FactoryError(f"{reader} did not read back the file written into the image (got {got!r})")
    return f"{reader} read a file from an ext4 image offline"


def _probe_debugfs(work: Path) -> str:
    from factory.core import offline

    snap = offline.snapshot(_ext4_image(work), files=("/etc/probe",))
    return _check_read(snap.contents, snap.reader)


def _probe_guestfish(work: Path) -> str:
    from factory.core import offline

    started = time.monotonic()
    snap = offline.guestfish_snapshot(_ext4_image(work), (), ("/etc/probe",), "tcg", device="/dev/sda")
    detail = _check_read(snap.contents, "libguestfs (appliance booted)")
    return f"{detail} in {time.monotonic() - started:.1f} s"


def _probe_mtools(work: Path) -> str:
    fat = work / "fat.img"
    src = work / "probe.txt"
    src.write_bytes(PROBE_TEXT)
    tools.run(["mformat", "-i", fat, "-C", "-f", "1440", "::"], timeout=30)
    tools.run(["mcopy", "-i", fat, src, "::/PROBE.TXT"], timeout=30)
    tools.run(["mcopy", "-i", fat, "::/PROBE.TXT", work / "back.txt"], timeout=30)
    if (work / "back.txt").read_bytes() != PROBE_TEXT:
        raise FactoryError("mtools did not copy a file into a FAT image and back")
    return "copied a file into a FAT image and back"


def _probe_mmdebstrap(work: Path) -> str:
    if not Path(LDLINUX_C32).is_file():
        raise FactoryError(f"{LDLINUX_C32} is missing")
    tools.run(["mmdebstrap", "--variant=essential", "--simulate", "bookworm", "/dev/null"], timeout=300)
    return "resolved a bookworm bootstrap through apt (mmdebstrap --simulate)"


def _probe_efiboot(work: Path) -> str:
    # The testbed's EFI boot image: grub-mkimage links BOOTX64.EFI from the modules of the Debian package
    # it downloads (so only the linker is the host's), mkfs.fat + mtools make the FAT image around it.
    version = tools.run(["grub-mkimage", "--version"], timeout=30).stdout.decode(errors="replace").strip()
    if "GRUB" not in version:
        raise FactoryError(f"grub-mkimage --version printed {version!r}, not GRUB's version")
    fat = work / "efiboot.img"
    (work / "grub.cfg").write_bytes(PROBE_TEXT)
    tools.run(["mkfs.fat", "-C", "-n", "PROBE", fat, "1440"], timeout=30)
    tools.run(["mmd", "-i", fat, "::EFI", "::EFI/BOOT"], timeout=30)
    tools.run(["mcopy", "-i", fat, work / "grub.cfg", "::EFI/BOOT/"], timeout=30)
    back = tools.run(["mcopy", "-i", fat, "::EFI/BOOT/grub.cfg", "-"], timeout=30).stdout
    if back != PROBE_TEXT:
        raise FactoryError("mkfs.fat + mtools did not make a FAT image with EFI/BOOT/grub.cfg")
    return f"made a FAT EFI/BOOT tree; {version}"


def _probe_cpio(work: Path) -> str:
    (work / "probe.txt").write_bytes(PROBE_TEXT)
    archive = tools.run(["cpio", "--quiet", "-o", "-H", "newc"], input=b"probe.txt\n", cwd=work).stdout
    listed = tools.run(["cpio", "--quiet", "-t"], input=archive, cwd=work).stdout.decode().split()
    if listed != ["probe.txt"]:
        raise FactoryError(f"cpio listed {listed} from the archive it wrote")
    return "wrote and listed a newc archive"


def _probe_openscap(work: Path) -> str:
    """Scan a small offline tree with the factory's own testbed datastream: one rule must pass, one fail."""
    from factory.stages.compliance import compliance, scap

    tree = work / "root"
    (tree / "etc" / "ssh").mkdir(parents=True)
    (tree / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\n")
    shadow = tree / "etc" / "shadow"
    shadow.write_text("root:!:19000:0:99999:7:::\n")
    shadow.chmod(0o640)
    arf, report = work / "arf.xml", work / "report.html"
    compliance.evaluate(scap.TESTBED_DATASTREAM, OSCAP_PROBE_PROFILE, tree, arf, report)
    got = {r.rule.rsplit("_rule_", 1)[-1]: r.result for r in scap.rule_results(arf)}
    want = {"sshd_disable_root_password_login": "fail", "file_permissions_etc_shadow": "pass"}
    if {k: got.get(k) for k in want} != want:
        raise FactoryError(f"oscap judged an offline tree wrongly (OSCAP_PROBE_ROOT ignored?): {got}")
    return "oscap evaluated an offline tree (OSCAP_PROBE_ROOT): one rule passed, one failed, as planted"


def _probe_uefi(work: Path) -> str:
    from factory.vm import qemu

    cfg = qemu.VmConfig(
        serial_socket=work / "console.sock",
        qmp_socket=work / "qmp.sock",
        memory_mib=256,
        firmware="uefi",
        network=False,
        name="factory-uefi-probe",
    )
    with qemu.running(cfg, work / "console.log") as vm:
        # OVMF draws its boot screen on the serial console too: any escape sequence means it runs.
        vm.console.expect([r"\x1b\[|BdsDxe|UEFI"], UEFI_START_TIMEOUT_S, "OVMF's first output")
    return "OVMF started and drew on the serial console"


def _probe_bmap(work: Path) -> str:
    image = work / "sparse.raw"
    with image.open("wb") as f:
        f.truncate(8 << 20)
        f.seek(4 << 20)
        f.write(PROBE_TEXT * 4096)  # one data run in the middle of a hole
    bmap = work / "sparse.bmap"
    tools.run(["bmaptool", "create", "-o", bmap, image], timeout=60)
    text = bmap.read_text()
    mapped = re.search(r"<MappedBlocksCount>\s*(\d+)", text)
    total = re.search(r"<BlocksCount>\s*(\d+)", text)
    if mapped is None or total is None or not 0 < int(mapped.group(1)) < int(total.group(1)):
        raise FactoryError("bmaptool create did not map the data of a sparse image (and only it)")
    return f"mapped {mapped.group(1)} of {total.group(1)} blocks of a sparse image"


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _probe_oci(work: Path) -> str:
    import gzip
    import io
    import tarfile

    layout = work / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("probe.txt")
        info.size = len(PROBE_TEXT)
        tar.addfile(info, io.BytesIO(PROBE_TEXT))
    raw_layer = buf.getvalue()
    layer = _blob(layout, gzip.compress(raw_layer, mtime=0))
    config = _blob(layout, json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw_layer).hexdigest()}"]},
    }).encode())  # fmt: skip
    manifest = _blob(layout, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())  # fmt: skip
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "probe"},
    }]}))  # fmt: skip
    out = json.loads(tools.run(["skopeo", "inspect", f"oci:{layout}:probe"], timeout=120).stdout)
    if out.get("Digest") != manifest["digest"]:
        raise FactoryError(f"skopeo read another manifest digest ({out.get('Digest')}) from the layout")
    tools.run(["skopeo", "copy", f"oci:{layout}:probe", f"docker-archive:{work / 'probe.tar'}:probe:1"])
    return "skopeo read an OCI layout and wrote it as a docker-archive"


def _probe_pxe(work: Path) -> str:
    from factory.vm import qemu

    tftp = work / "tftp"
    (tftp / "pxelinux.cfg").mkdir(parents=True)
    shutil.copy(PXELINUX_0, tftp / "pxelinux.0")
    shutil.copy(LDLINUX_C32, tftp / "ldlinux.c32")
    # `serial` in the config it fetched over TFTP is what makes pxelinux print its banner on ttyS0.
    (tftp / "pxelinux.cfg" / "default").write_text("serial 0 115200\nprompt 1\ntimeout 0\n")
    cfg = qemu.VmConfig(
        serial_socket=work / "console.sock",
        qmp_socket=work / "qmp.sock",
        memory_mib=256,
        boot_order="n",
        tftp_root=tftp,
        bootfile="pxelinux.0",
        name="factory-pxe-probe",
    )
    with qemu.running(cfg, work / "console.log") as vm:
        vm.console.expect([r"PXELINUX \d"], PXE_BOOT_TIMEOUT_S, "pxelinux's banner (config read over TFTP)")
    return "iPXE loaded pxelinux and its config from QEMU's TFTP (banner on the serial console)"


CAPABILITIES: tuple[Capability, ...] = (
    Capability(
        "qemu", "required", "QEMU boots a kernel (TCG)", ("qemu-system-x86_64", "depmod"), _probe_qemu
    ),
    Capability(
        "qemu-img", "required", "qemu-img creates and converts images", ("qemu-img",), _probe_qemu_img
    ),
    Capability("iso", "required", "xorriso makes a bootable ISO", ("xorriso", ISOLINUX_BIN), _probe_iso),
    Capability("ssh", "required", "ssh keys and client", ("ssh", "ssh-keygen"), _probe_ssh),
    Capability(
        "ext4", "required", "ext4 images read offline (debugfs)", ("mkfs.ext4", "debugfs"), _probe_debugfs
    ),
    Capability(
        "libguestfs",
        "xfs",
        "other images read offline (libguestfs)",
        ("guestfish", "depmod"),
        _probe_guestfish,
    ),
    Capability("mtools", "serial", "FAT boot images edited (mtools)", ("mcopy", "mformat"), _probe_mtools),
    Capability(
        "mmdebstrap",
        "testbed",
        "testbed bootstrap (mmdebstrap)",
        ("mmdebstrap", LDLINUX_C32),
        _probe_mmdebstrap,
    ),
    Capability("cpio", "testbed", "initramfs archives (cpio)", ("cpio",), _probe_cpio),
    Capability(
        "efiboot",
        "testbed",
        "testbed UEFI boot image (grub-mkimage, mkfs.fat, mtools)",
        ("grub-mkimage", "mkfs.fat", "mmd", "mcopy"),
        _probe_efiboot,
    ),
    Capability("uefi", "uefi", "UEFI firmware starts (OVMF)", (OVMF_FD,), _probe_uefi),
    Capability("openscap", "compliance", "offline compliance scans (OpenSCAP)", ("oscap",), _probe_openscap),
    # Every shipped spec exports raw (AWS takes it), and with it its block map: required, like the rest.
    Capability("bmap", "required", "block maps of raw images (bmaptool)", ("bmaptool",), _probe_bmap),
    Capability("oci", "export", "OCI image layouts and docker-archives (skopeo)", ("skopeo",), _probe_oci),
    Capability(
        "pxe",
        "export",
        "network boot (iPXE, QEMU's TFTP, pxelinux; GRUB's EFI modules)",
        ("qemu-system-x86_64", PXELINUX_0, LDLINUX_C32, GRUB_EFI_MODULES, "grub-mkimage"),
        _probe_pxe,
    ),
)
BY_NAME = {c.name: c for c in CAPABILITIES}


def needed_by(spec: Spec) -> tuple[str, ...]:
    """The capabilities one spec's build uses."""
    names = [c.name for c in CAPABILITIES if c.needed_for == "required"]
    if spec.media.builtin == "testbed":
        names += [c.name for c in CAPABILITIES if c.needed_for == "testbed"]
    if spec.boot.mode is BootMode.SERIAL_PROMPT:
        names.append("mtools")
    root = next((f for f in spec.expect.filesystems if f.mount == "/"), None)
    if root is None or not root.fstype.startswith("ext"):
        names.append("libguestfs")  # seal's offline re-check of xfs/LVM
    if spec.vm.firmware is Firmware.UEFI:
        names.append("uefi")
    if spec.compliance is not None:
        names.append("openscap")
    if ExportFormat.OCI in spec.export or spec.registry is not None:
        names.append("oci")
    if ExportFormat.PXE in spec.export or spec.boot.mode is BootMode.PXE:
        names.append("pxe")
    return tuple(dict.fromkeys(names))


def tools_of(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for n in names for t in BY_NAME[n].tools))


def _fix(cap: Capability) -> str:
    from factory.host import hostdeps

    missing = hostdeps.check(cap.tools)
    if not missing:
        return "see the detail; `factory doctor` runs this probe again"
    return hostdeps.hint(missing)


def _fingerprint(cap: Capability) -> str | None:
    parts = []
    for tool in cap.tools:
        found = tool if tool.startswith("/") else shutil.which(tool)
        if found is None:
            return None
        try:
            st = Path(found).resolve().stat()
        except OSError:
            return None
        parts.append(f"{found}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join([cap.name, *parts]).encode()).hexdigest()


def _cache_file() -> Path:
    return paths.cache_dir() / "capabilities.json"


def _load_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def run_probe(cap: Capability) -> CapabilityStatus:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"factory-probe-{cap.name}-") as tmp:
        try:
            detail = cap.probe(Path(tmp))
            ok, fix = True, ""
        except FactoryError as exc:
            detail, ok, fix = exc.message, False, _fix(cap)
        except (OSError, ValueError) as exc:  # e.g. pycdlib on an unreadable ISO
            detail, ok, fix = f"{type(exc).__name__}: {exc}", False, _fix(cap)
    return CapabilityStatus(
        cap.name, cap.needed_for, cap.what, ok, detail, round(time.monotonic() - started, 2), fix
    )


def check(names: Iterable[str], *, reuse: bool = False) -> tuple[CapabilityStatus, ...]:
    """Probe each named capability; with `reuse`, a verdict that passed before with the same programs
    and files is taken as it is."""
    cache = _load_cache() if reuse else {}
    results = []
    for name in names:
        cap = BY_NAME[name]
        fp = _fingerprint(cap)
        if reuse and fp is not None and cache.get(name) == fp:
            results.append(
                CapabilityStatus(cap.name, cap.needed_for, cap.what, True, "passed before", 0.0, "", True)
            )
            continue
        status = run_probe(cap)
        results.append(status)
        if status.ok and fp is not None:
            cache[name] = fp
        else:
            cache.pop(name, None)
    # Only passing verdicts are remembered: a failure is probed again next time.
    current = _load_cache()
    current.update({s.name: cache[s.name] for s in results if s.ok and s.name in cache})
    for s in results:
        if not s.ok:
            current.pop(s.name, None)
    atomic_write_text(_cache_file(), json.dumps(current, indent=2, sort_keys=True) + "\n")
    return tuple(results)
