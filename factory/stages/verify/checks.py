"""The acceptance checks: one table of names that tests/images implements and `expect.skip` may name.

tests/images/test_<name>.py holds one `test_<name>` per entry (a unit test keeps the two in step), and
`factory verify` refuses a spec whose skip list names a check that is not here, before booting anything.
The pure helpers below (shadow fields, kickstart lines, df output) are what the suite uses to judge the
text it reads from the guest; they are here so they can be unit-tested without a VM.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from factory.errors import VerifyError
from factory.spec import Spec

MACHINE = "machine"  # a booted image, over SSH
CONTAINER = "container"  # a container's root filesystem, through testinfra's chroot backend
PROFILES = (MACHINE, CONTAINER)

# The boots verify makes of a machine image: today's (the build's own QEMU machine, the build key) and
# one per target the spec publishes to (factory.stages.verify.targets), each emulating how that
# platform boots the image and hands it its key, hostname and disk.
DEFAULT_BOOT = "default"
TARGET_BOOTS = ("aws", "openstack", "vsphere", "metal-bios", "metal-uefi")
BOOTS = (DEFAULT_BOOT, *TARGET_BOOTS)
# Target boots that hand the guest a key through cloud-init's metadata (the suite logs in with it).
METADATA_BOOTS = frozenset({"aws", "openstack", "vsphere"})


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    # Which profiles run it: a container has no kernel, boot loader, services or mounts to look at.
    profiles: frozenset[str] = frozenset({MACHINE})
    # Which boots run it (None: every boot); a target check means nothing on the build's own boot.
    boots: frozenset[str] | None = None


BOTH = frozenset({MACHINE, CONTAINER})
CONTAINER_ONLY = frozenset({CONTAINER})


CHECKS: tuple[Check, ...] = (
    Check(
        "interfaces_onboot", "every interface in expect.interfaces_onboot has ONBOOT=yes in its ifcfg file"
    ),
    Check("default_kernel", "the boot loader's default kernel is the declared flavour (RHCK or UEK)"),
    Check("running_kernel", "the running kernel (uname -r) is the declared flavour (RHCK or UEK)"),
    Check("packages_required", "every package in expect.packages_required is installed", BOTH),
    Check("packages_forbidden", "no package in expect.packages_forbidden is installed", BOTH),
    Check("services_enabled", "every service in expect.services_enabled starts at boot"),
    Check("services_running", "every service in expect.services_running is running"),
    Check("ssh_service", "the SSH service (expect.ssh_service) is enabled and running"),
    Check("root_password", "root's password is locked or hashed as expect.root_password says", BOTH),
    Check(
        "no_cleartext_password",
        "no account has an empty or clear-text password; no kickstart copy has one",
        BOTH,
    ),
    Check("serial_console", "the kernel command line has console=ttyS0"),
    Check("selinux_mode", "getenforce reports the declared SELinux mode"),
    Check("cloud_init", "cloud-init is installed (AWS targets)"),
    Check("no_kickstart_left", "no installer kickstart copy is left; anaconda's own copy is root-only", BOTH),
    Check("no_private_keys", "no private key material under /root, /home, /tmp or /var/tmp", BOTH),
    Check("filesystems", "each declared filesystem is mounted with its type and at least its size"),
    Check("ena_module", "with aws.ena: the running kernel has the ena driver (module or built in)"),
    Check("nvme_initramfs", "with aws.ena (Nitro): nvme is built into the kernel or is in its initramfs"),
    Check(
        "metadata_login",
        "the suite is logged in as the cloud user with the key the target's metadata served",
        boots=METADATA_BOOTS,
    ),
    Check(
        "metadata_hostname",
        "the hostname is the one the target's metadata gave (cloud-init set it)",
        boots=METADATA_BOOTS,
    ),
    Check(
        "metadata_datasource",
        "cloud-init's own detection chose the target's datasource and finished without errors",
        boots=METADATA_BOOTS,
    ),
    Check(
        "root_grown",
        "the root file system grew to the larger disk the target gives (growpart, resizefs)",
        boots=frozenset({"aws", "openstack"}),
    ),
    Check(
        "network_dhcp",
        "the network came up by DHCP on the target's NIC (another MAC than the build's)",
        boots=frozenset(TARGET_BOOTS),
    ),
    Check(
        "no_build_key",
        "the build key lets nobody in (no authorized_keys line carries it) on a sealed image",
        boots=frozenset(TARGET_BOOTS),
    ),
    Check(
        "vmware_drivers",
        "vmxnet3 and vmw_pvscsi (the NIC and disk a vSphere VM gets) are built in or in the initramfs",
        boots=frozenset({"vsphere"}),
    ),
    Check("no_kernel", "no kernel, initramfs, boot loader or modules (/boot, /lib/modules)", CONTAINER_ONLY),
    Check("no_host_keys", "no SSH host keys (each container must not share them)", CONTAINER_ONLY),
    Check("no_machine_id", "/etc/machine-id is absent or empty", CONTAINER_ONLY),
)

CHECK_NAMES: frozenset[str] = frozenset(c.name for c in CHECKS)

# Kickstart copies an installer leaves in temporary places: never acceptable in an image.
INSTALLER_KICKSTARTS: tuple[str, ...] = (
    "/tmp/ks.cfg",
    "/root/ks.cfg",
    "/run/install/ks.cfg",
    "/tmp/ks-script.cfg",
)
# Anaconda's record of the install: kept (root-only) until sealing removes it, re-checked after seal.
ANACONDA_KICKSTARTS: tuple[str, ...] = ("/root/anaconda-ks.cfg", "/root/original-ks.cfg")

# Password hashes we accept: SHA-512 (EL's default), SHA-256, yescrypt (Debian 12's default).
STRONG_HASH_RE = re.compile(r"^\$(6|5|y)\$[^$:]+\$?[^:]*$")


def unknown_skips(spec: Spec) -> list[str]:
    """The names in `expect.skip` that are not checks, in spec order."""
    return [s.rule for s in spec.expect.skip if s.rule not in CHECK_NAMES]


def require_known_skips(spec: Spec) -> None:
    """Raise VerifyError when `expect.skip` names a check the suite does not have (before any boot)."""
    unknown = unknown_skips(spec)
    if unknown:
        known = ", ".join(sorted(CHECK_NAMES))
        raise VerifyError(
            f"{spec.source}: expect.skip names unknown check(s) {', '.join(unknown)} (known: {known})"
        )


def profile_skip_reason(profile: str, name: str) -> str | None:
    """Why check `name` does not run in `profile`, or None when it does."""
    check = next(c for c in CHECKS if c.name == name)
    if profile in check.profiles:
        return None
    return f"not part of the {profile} profile"


def boot_skip_reason(boot: str, name: str) -> str | None:
    """Why check `name` does not run in boot `boot` (see BOOTS), or None when it does."""
    check = next(c for c in CHECKS if c.name == name)
    if check.boots is None or boot in check.boots:
        return None
    return f"not part of the {boot} boot (only {', '.join(sorted(check.boots))})"


def skip_reason(spec: Spec, name: str) -> str | None:
    for s in spec.expect.skip:
        if s.rule == name:
            return f"skipped by {spec.source.name}: {s.reason}"
    return None


def shadow_field(shadow_text: str, user: str) -> str | None:
    """The password field of `user` in /etc/shadow text, or None when the user has no entry."""
    for line in shadow_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 2 and parts[0] == user:
            return parts[1]
    return None


def password_state(field: str) -> str:
    """Classify a shadow password field: locked, hashed, weak-hash, empty or cleartext."""
    if field.startswith(("!", "*")):
        return "locked"
    if field == "":
        return "empty"
    if STRONG_HASH_RE.match(field):
        return "hashed"
    if field.startswith("$"):
        return "weak-hash"  # md5 ($1$), blowfish variants...: not what a golden image should carry
    return "cleartext"


def root_password_ok(field: str, policy: str) -> bool:
    """Does root's shadow field satisfy expect.root_password (locked / hashed / locked-or-hashed)?"""
    state = password_state(field)
    if policy == "locked":
        return state == "locked"
    if policy == "hashed":
        # A locked hash (`!$6$...`) still holds a strong hash: it counts as hashed too.
        return state == "hashed" or (state == "locked" and password_state(field.lstrip("!")) == "hashed")
    return state in ("locked", "hashed")


def unsafe_accounts(shadow_text: str) -> list[str]:
    """Accounts whose shadow field is empty (log in without a password) or clear text."""
    bad = []
    for line in shadow_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 2 and password_state(parts[1]) in ("empty", "cleartext"):
            bad.append(parts[0])
    return bad


def cleartext_kickstart_lines(text: str) -> list[int]:
    """Line numbers of `rootpw`/`user` commands that carry a password that is not pre-hashed."""
    bad = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        if not words or words[0] not in ("rootpw", "user"):
            continue
        opts = {w.split("=", 1)[0] for w in words[1:] if w.startswith("--")}
        if "--iscrypted" in opts:
            continue
        if words[0] == "rootpw":
            # `rootpw --lock` without a password is fine; any other value is a clear-text password.
            values = [w for w in words[1:] if not w.startswith("--")]
            if values or "--plaintext" in opts:
                bad.append(n)
        elif "--password" in opts or "--plaintext" in opts:
            bad.append(n)
    return bad


def kernel_flavour(version: str) -> str:
    """`uek` for Oracle's Unbreakable Enterprise Kernel (its version says so), else `rhck`."""
    return "uek" if "uek" in version else "rhck"


def console_args(cmdline: str) -> list[str]:
    return [a.split("=", 1)[1] for a in cmdline.split() if a.startswith("console=")]


def df_size_bytes(df_posix_output: str) -> int:
    """Total size from `df -P -k MOUNT` (POSIX format: one header line, then 1024-blocks in field 2)."""
    lines = [ln for ln in df_posix_output.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError(f"unexpected df output: {df_posix_output!r}")
    return int(lines[-1].split()[1]) * 1024


_KO_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


def module_listed(listing: str, name: str) -> bool:
    """Is module `name` (dashes and underscores alike) one of the paths in `listing` (modules.builtin, a
    `find` result or an initramfs listing: any whitespace-separated words, paths ending in .ko[.xz...])?"""
    wanted = name.replace("-", "_")
    for word in listing.split():
        base = word.rsplit("/", 1)[-1]
        for suffix in _KO_SUFFIXES:
            if base.endswith(suffix) and base.removesuffix(suffix).replace("-", "_") == wanted:
                return True
    return False


def initramfs_candidates(kernel_version: str) -> tuple[str, ...]:
    """Where the initramfs of a kernel lives: dracut's name (EL), Debian's (and the testbed's), SUSE's."""
    return (
        f"/boot/initramfs-{kernel_version}.img",
        f"/boot/initrd.img-{kernel_version}",
        f"/boot/initrd-{kernel_version}",
    )


def initramfs_list_command(path: str) -> str:
    """A shell command listing an initramfs' files with whatever the image has: dracut's lsinitrd (EL),
    initramfs-tools' lsinitramfs, else zcat | cpio (busybox's when there is no cpio)."""
    q = shlex.quote(path)
    return (
        f"if command -v lsinitrd >/dev/null 2>&1; then lsinitrd {q}; "
        f"elif command -v lsinitramfs >/dev/null 2>&1; then lsinitramfs {q}; "
        f"elif command -v cpio >/dev/null 2>&1; then zcat {q} | cpio -t 2>/dev/null; "
        f"else zcat {q} | busybox cpio -t 2>/dev/null; fi"
    )
