"""The image spec: one YAML file per image, loaded into one frozen, typed object.

Every problem is collected and reported at once with its field path (pydantic does the collecting);
unknown fields are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.errors import InputError, SpecError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Firmware(StrEnum):
    BIOS = "bios"
    UEFI = "uefi"


class Accel(StrEnum):
    """`auto` uses KVM only when a probe boot really runs a guest, else TCG."""

    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


class BootMode(StrEnum):
    KERNEL = "kernel"  # boot the ISO's kernel+initrd directly: nothing is typed
    SERIAL_PROMPT = "serial-prompt"  # remastered ISO, boot line typed over the serial console
    # Network install, no ISO attached: QEMU's iPXE ROM -> QEMU's TFTP -> pxelinux -> the installer, which
    # fetches the kickstart and the install source (inst.repo=http://) from the factory's server.
    PXE = "pxe"


class Kernel(StrEnum):
    RHCK = "rhck"  # Red Hat compatible kernel
    UEK = "uek"  # Oracle's Unbreakable Enterprise Kernel
    ANY = "any"  # the OS has only one kernel flavour (the testbed)


class SELinux(StrEnum):
    ENFORCING = "enforcing"
    PERMISSIVE = "permissive"
    DISABLED = "disabled"
    ABSENT = "absent"  # the OS has no SELinux at all (the testbed)


class ExportFormat(StrEnum):
    RAW = "raw"
    QCOW2 = "qcow2"
    VMDK = "vmdk"
    VHD = "vhd"
    OVA = "ova"  # OVF 1.0 + streamOptimized VMDK + SHA256 manifest, in one tar (stages/export/ova.py)
    # A container base image from the root filesystem: OCI image layout + docker-archive
    # (factory.stages.export.oci).
    OCI = "oci"
    # A PXE boot + HTTP install tree for bare metal from the install media (factory/stages/export/pxe.py).
    PXE = "pxe"


class UploadMethod(StrEnum):
    EBS_DIRECT = "ebs-direct"
    VM_IMPORT = "vm-import"


class KmsGrants(StrEnum):
    """What promotion does when a `share_with` account may not use a region's KMS key."""

    CHECK = "check"  # refuse before uploading: the key policy or a grant must already allow it
    CREATE = "create"  # create the grant (CreateGrant on the key, by the target account's profile)


class Media(Strict):
    """Install media: exactly one of url, path or path_env; always a sha256."""

    url: str | None = None
    path: Path | None = None
    # An environment variable naming a local ISO (Oracle's ISO sits behind a login).
    path_env: str | None = None
    # `testbed`: the ISO built by factory.testbed from Debian packages (CI and the demo).
    builtin: Literal["testbed"] | None = None
    sha256: str | None = None
    # Oracle shows the ISO's checksum only behind its login: it may come from the environment too.
    sha256_env: str | None = None
    volume_label: str

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not SHA256_RE.match(v):
            raise ValueError("must be 64 lowercase hex digits")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(https?|file)://", v):
            raise ValueError("must start with http://, https:// or file://")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Media:
        given = [n for n in ("url", "path", "path_env", "builtin") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, path, path_env, builtin (got {given or 'none'})")
        if self.builtin is None and (self.sha256 is None) == (self.sha256_env is None):
            raise ValueError("give exactly one of sha256 or sha256_env for url, path and path_env media")
        return self

    def expected_sha256(self, spec_file: Path) -> str | None:
        """The ISO's sha256 from the spec or its environment variable (None for builtin media)."""
        if self.sha256_env is None:
            return self.sha256
        value = os.environ.get(self.sha256_env, "").strip().lower()
        if not SHA256_RE.match(value):
            raise InputError(
                f"{spec_file}: media.sha256_env: environment variable {self.sha256_env} must hold the ISO's "
                "sha256 (64 hex digits)"
            )
        return value


class RuleOff(Strict):
    rule: str
    reason: Annotated[str, Field(min_length=3)]


class KickstartSpec(Strict):
    path: Path
    version: Literal["RHEL7", "RHEL8", "RHEL9"] = "RHEL7"
    disabled_rules: tuple[RuleOff, ...] = ()


class Vm(Strict):
    memory_mib: Annotated[int, Field(ge=256, le=262144)] = 2048
    cpus: Annotated[int, Field(ge=1, le=64)] = 2
    disk_gib: Annotated[int, Field(ge=1, le=2048)] = 20
    firmware: Firmware = Firmware.BIOS
    accel: Accel = Accel.AUTO


class Boot(Strict):
    mode: BootMode = BootMode.KERNEL
    # Extra kernel arguments for the installer (after inst.ks, inst.text and console=ttyS0).
    extra_args: tuple[str, ...] = ()


class Timeouts(Strict):
    """Seconds. Every wait in the factory has a bound, and says what it waited for."""

    install: Annotated[int, Field(gt=0)] = 7200
    # No console or installer-log output for this long is a hang.
    idle: Annotated[int, Field(gt=0)] = 600
    # The guest must fetch the kickstart within this long of QEMU starting.
    kickstart_fetch: Annotated[int, Field(gt=0)] = 300
    boot_prompt: Annotated[int, Field(gt=0)] = 120
    ssh: Annotated[int, Field(gt=0)] = 300
    verify: Annotated[int, Field(gt=0)] = 900


class Filesystem(Strict):
    mount: str
    fstype: str
    min_size_gib: Annotated[float, Field(gt=0)] | None = None


class Expect(Strict):
    """What the image must be; tests/images turns each field into small named tests."""

    interfaces_onboot: tuple[str, ...] = ("eth0",)
    kernel: Kernel = Kernel.RHCK
    packages_required: tuple[str, ...] = ()
    packages_forbidden: tuple[str, ...] = ()
    services_enabled: tuple[str, ...] = ("sshd",)
    services_running: tuple[str, ...] = ("sshd",)
    ssh_service: str = "sshd"
    selinux: SELinux = SELinux.ENFORCING
    serial_console: bool = True
    cloud_init: bool = True
    root_password: Literal["locked", "hashed", "locked-or-hashed"] = "locked-or-hashed"
    filesystems: tuple[Filesystem, ...] = ()
    # Checks to skip for this image, each with a reason (names: see tests/images, `factory verify --list`).
    skip: tuple[RuleOff, ...] = ()
    # verify's target boots (factory.stages.verify.targets): None = one per target the spec publishes to;
    # a list names which (aws, openstack, vsphere, metal-bios, metal-uefi); [] = today's boot only.
    target_boots: tuple[Literal["aws", "openstack", "vsphere", "metal-bios", "metal-uefi"], ...] | None = None


class TokenSource(StrEnum):
    # GitHub Actions' OIDC provider: a fresh token (audience sts.amazonaws.com) is requested at every refresh.
    GITHUB_ACTIONS = "github-actions"


class WebIdentity(Strict):
    """Credentials from AssumeRoleWithWebIdentity (an OIDC token, e.g. a CI job's) instead of a profile.

    botocore refreshes them by itself, re-reading the token each time; the session is not a chained role
    session, so it may last up to the role's maximum (12 h), and a refresh needs no long-lived key at all.
    """

    role_arn: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")]
    # Exactly one: a file holding the token (refreshed on disk by its issuer: EKS, a CI step), or a source.
    token_file: Path | None = None
    token_from: TokenSource | None = None
    audience: str = "sts.amazonaws.com"
    session_name: Annotated[str, Field(pattern=r"^[\w+=,.@-]{2,64}$")] = "image-factory"
    duration_seconds: Annotated[int, Field(ge=900, le=43200)] = 3600

    @model_validator(mode="after")
    def _one_token(self) -> WebIdentity:
        if (self.token_file is None) == (self.token_from is None):
            raise ValueError("give exactly one of token_file or token_from")
        return self


class Target(Strict):
    """One AWS account reached through a boto3 named profile, and its regions with their KMS keys."""

    # The account's name in records and manifests; with web_identity it need not exist in ~/.aws/config.
    profile: str
    web_identity: WebIdentity | None = None
    # region -> KMS key (ARN, key id or alias) used to encrypt the copy in that region.
    regions: dict[str, str]
    share_with: tuple[Annotated[str, Field(pattern=r"^\d{12}$")], ...] = ()
    # The copies are encrypted: a share_with account can launch one only if it may use the region's key.
    kms_grants: KmsGrants = KmsGrants.CHECK

    @field_validator("regions")
    @classmethod
    def _regions(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("at least one region")
        for region, key in v.items():
            if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", region):
                raise ValueError(f"{region!r} is not an AWS region name")
            if not key:
                raise ValueError(f"region {region} has no KMS key")
        return v


class LaunchTest(Strict):
    """aws.launch_test: before older AMIs are retired, one instance per region of one account is launched
    from the new encrypted AMI, its status checks awaited, its console saved, the acceptance suite run over
    SSH, and the instance terminated (always), with anything the test created removed."""

    enabled: bool = True
    # The target profile whose regions are tested; default: the first of aws.targets.
    account: str | None = None
    # Default: t3.micro (Nitro) with aws.ena, else t2.micro (Xen: an AMI without ENA launches there).
    instance_type: str | None = None
    # Default: the region's default VPC and its default subnet.
    subnet_id: Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")] | None = None
    # Default: a temporary group allowing SSH (tcp 22) from `ssh_cidr` only, deleted afterwards.
    security_group_id: Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")] | None = None
    # Default: a temporary key pair (private half only in a 0600 temp file, never logged), deleted after.
    key_name: str | None = None
    private_key_file: Path | None = None
    # Who may reach the temporary group's SSH port; default: this runner's public address (/32).
    ssh_cidr: str | None = None
    # The cloud user the suite logs in as (with sudo unless root).
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "ec2-user"
    # Seconds from RunInstances until both status checks are "ok", per region.
    status_timeout: Annotated[float, Field(gt=0)] = 900

    @model_validator(mode="after")
    def _consistent(self) -> LaunchTest:
        if (self.key_name is None) != (self.private_key_file is None):
            raise ValueError("give key_name and private_key_file together (or neither: a temporary key pair)")
        if self.ssh_cidr is not None:
            if self.security_group_id is not None:
                raise ValueError("ssh_cidr is for the temporary security group; not with security_group_id")
            try:
                ipaddress.ip_network(self.ssh_cidr)
            except ValueError:
                raise ValueError(
                    f"ssh_cidr {self.ssh_cidr!r} is not a network (e.g. 203.0.113.7/32)"
                ) from None
        return self

    def type_for(self, ena: bool) -> str:
        return self.instance_type or ("t3.micro" if ena else "t2.micro")


class Aws(Strict):
    upload: UploadMethod = UploadMethod.EBS_DIRECT
    # The account/region the image is first uploaded to (then copied, encrypted, to every target).
    source_profile: str
    source_region: str
    # vm-import only: the bucket the disk is uploaded to.
    s3_bucket: str | None = None
    ena: bool = True
    # Formatted with {name}, {build_id}, {date}.
    ami_name: str = "{name}-{date}-{build_id}"
    keep: Annotated[int, Field(ge=0)] = 2
    ssm_parameter: str | None = None
    targets: tuple[Target, ...]
    copy_timeout: Annotated[int, Field(gt=0)] = 3600
    endpoint_url: str | None = None
    # The source account through web identity (OIDC) instead of the named profile.
    source_web_identity: WebIdentity | None = None
    # Smoke test of the promoted AMIs before retirement (see LaunchTest).
    launch_test: LaunchTest | None = None

    @model_validator(mode="after")
    def _bucket(self) -> Aws:
        if self.upload is UploadMethod.VM_IMPORT and not self.s3_bucket:
            raise ValueError("upload: vm-import needs s3_bucket")
        if not self.targets:
            raise ValueError("targets: at least one target account")
        if self.ssm_parameter is not None and not self.ssm_parameter.startswith("/"):
            raise ValueError("ssm_parameter must start with '/'")
        seen: dict[str, WebIdentity | None] = {self.source_profile: self.source_web_identity}
        for t in self.targets:
            if t.profile in seen and seen[t.profile] != t.web_identity:
                raise ValueError(f"profile {t.profile!r} is given different web_identity settings")
            seen[t.profile] = t.web_identity
        lt = self.launch_test
        if lt is not None and lt.account is not None and lt.account not in {t.profile for t in self.targets}:
            raise ValueError(f"launch_test.account {lt.account!r} is not one of the targets' profiles")
        return self

    def web_identity_for(self, profile: str) -> WebIdentity | None:
        """How the account named `profile` gets credentials: web identity, or None for the named profile."""
        if profile == self.source_profile:
            return self.source_web_identity
        return next((t.web_identity for t in self.targets if t.profile == profile), None)


class Waiver(Strict):
    """A failing compliance rule accepted on purpose; the reason travels into the record and the report."""

    rule: Annotated[str, Field(min_length=1)]
    reason: Annotated[str, Field(min_length=3)]

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        if len(v.strip()) < 3:
            raise ValueError("give the reason the rule is waived (at least 3 characters)")
        return v.strip()


class Compliance(Strict):
    """Scan the sealed image with OpenSCAP against `profile`; the gate passes when every failing rule is
    waived. `datastream` defaults to the SCAP Security Guide one for the spec's OS
    (factory.stages.compliance.scap)."""

    profile: Annotated[str, Field(min_length=1)]
    datastream: Path | None = None
    waivers: tuple[Waiver, ...] = ()
    # Serve the kickstart with anaconda's `%addon org_fedora_oscap` for the profile (hardens at install).
    remediate_at_install: bool = False

    @field_validator("waivers")
    @classmethod
    def _unique(cls, v: tuple[Waiver, ...]) -> tuple[Waiver, ...]:
        seen = [w.rule for w in v]
        dupes = sorted({r for r in seen if seen.count(r) > 1})
        if dupes:
            raise ValueError(f"rule {dupes[0]!r} is waived more than once")
        return v


# (os, release) whose kernel has no ENA driver: an AMI flagged EnaSupport would boot on a Nitro instance
# without network. The driver arrived in the EL 7.4 kernel (3.10.0-693); Oracle Linux's RHCK is the same.
NO_ENA: dict[tuple[str, str], str] = {
    (
        os_name,
        release,
    ): f"{label} {release}'s kernel {kernel} has no ena module (ENA arrived in the EL 7.4 kernel)"
    for os_name, label in (("centos", "CentOS"), ("oraclelinux", "Oracle Linux"))
    for release, kernel in (
        ("7.0", "3.10.0-123"),
        ("7.1", "3.10.0-229"),
        ("7.2", "3.10.0-327"),
        ("7.3", "3.10.0-514"),
    )
}


class Container(Strict):
    """The container base image (`export: [oci]`): what of the installed tree it leaves out, how it runs."""

    # Absolute glob patterns of what only a booting machine needs; None: the OS's default
    # (factory.stages.export.oci.build.DEFAULT_EXCLUDE). "/boot/*" keeps an empty /boot, "/boot" drops it.
    exclude: tuple[str, ...] | None = None
    # Added to the default list instead of replacing it.
    exclude_extra: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None  # None: /bin/bash on EL, /bin/sh on the testbed
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    # org.opencontainers.image.source (where the image's definition lives); None: the spec's path.
    source: str | None = None
    labels: dict[str, str] = {}

    @field_validator("exclude", "exclude_extra")
    @classmethod
    def _absolute(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for pattern in v or ():
            if not pattern.startswith("/") or pattern == "/":
                raise ValueError(f"{pattern!r}: patterns are absolute paths in the image, not / itself")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", item):
                raise ValueError(f"{item!r} is not KEY=value")
        return v


class Ova(Strict):
    """The virtual hardware an OVA describes (CPUs, memory and firmware come from `vm`)."""

    # vmx-13 = ESXi 6.5 and later: old enough for every supported vSphere, new enough for UEFI + vmxnet3.
    hardware_version: Annotated[int, Field(ge=7, le=21)] = 13
    nic: Literal["vmxnet3", "e1000"] = "vmxnet3"
    serial_port: bool = False


class Vsphere(Strict):
    """Where vSphere templates go: one vCenter, one datacenter and its compute / storage / network."""

    url: Annotated[str, Field(pattern=r"^https?://[^/\s]+(/sdk)?/?$")]
    datacenter: str
    # Exactly one of cluster (its root resource pool) or resource_pool (an inventory path or name).
    cluster: str | None = None
    resource_pool: str | None = None
    datastore: str
    # A VM folder path under the datacenter's vm folder ("" = that folder itself).
    folder: str = ""
    network: str
    # Formatted with {name}, {build_id}, {date}.
    template_name: str = "{name}-{date}-{build_id}"
    keep: Annotated[int, Field(ge=1)] = 2
    # Credentials: VSPHERE_USER / VSPHERE_PASSWORD from the environment, or this YAML file
    # (`username:`, `password:`), never logged.
    credentials_file: Path | None = None
    # TLS is verified unless this is true (a warning is printed every run).
    insecure: bool = False
    # Seconds for the whole import (lease ready, upload, complete).
    timeout: Annotated[int, Field(gt=0)] = 3600

    @model_validator(mode="after")
    def _compute(self) -> Vsphere:
        if (self.cluster is None) == (self.resource_pool is None):
            raise ValueError("give exactly one of cluster or resource_pool")
        if "{build_id}" not in self.template_name:
            raise ValueError("template_name must contain {build_id} (one template per build)")
        return self


class OpenstackCloud(Strict):
    """One cloud (clouds.yaml entry), optionally one region, and who the image is shared with."""

    cloud: str
    region: str | None = None
    visibility: Literal["private", "shared", "community", "public"] = "private"
    # Project ids the image is shared with (visibility becomes `shared`).
    share_with: tuple[str, ...] = ()
    # project id -> clouds.yaml entry of that project: the membership is accepted from there
    # (projects not named here see the image once they accept it themselves).
    accept_as: dict[str, str] = {}

    @model_validator(mode="after")
    def _share(self) -> OpenstackCloud:
        if self.share_with and self.visibility not in ("shared", "private"):
            raise ValueError("share_with needs visibility shared (or private, which becomes shared)")
        unknown = sorted(set(self.accept_as) - set(self.share_with))
        if unknown:
            raise ValueError(f"accept_as names projects not in share_with: {', '.join(unknown)}")
        return self


class Openstack(Strict):
    """Glance images in one or more clouds, named as in openstacksdk's clouds.yaml."""

    # raw for Ceph-backed clouds (Nova clones raw RBD images instead of converting them), else qcow2.
    disk_format: Literal["qcow2", "raw"] = "qcow2"
    image_name: str = "{name}-{date}-{build_id}"
    keep: Annotated[int, Field(ge=1)] = 2
    os_distro: str | None = None  # default from `os`: centos, ol, debian
    os_version: str = "7"
    hw_disk_bus: Literal["virtio", "scsi", "ide", "sata"] = "virtio"
    hw_vif_model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    hw_qemu_guest_agent: bool = False
    min_ram_mib: Annotated[int, Field(ge=0)] = 512
    # An image carrying this tag is the "latest" one users launch by: retirement never touches it.
    latest_tag: str = "latest"
    clouds: tuple[OpenstackCloud, ...]
    # Seconds for one upload + checksum.
    timeout: Annotated[int, Field(gt=0)] = 3600

    @model_validator(mode="after")
    def _clouds(self) -> Openstack:
        if not self.clouds:
            raise ValueError("clouds: at least one cloud")
        if "{build_id}" not in self.image_name:
            raise ValueError("image_name must contain {build_id} (one image per build)")
        return self


class Registry(Strict):
    """A container registry the `oci` export is pushed to with skopeo: tags are build ids and `latest`."""

    # host[:port], no scheme (skopeo's docker:// transport): registry.example.com, 127.0.0.1:5000
    url: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d{1,5})?$")]
    # The distribution spec's repository name grammar: lowercase path components.
    repository: Annotated[str, Field(pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")]
    # Build tags kept (the newest, this build included); older ones are deleted, never `latest`'s manifest.
    keep: Annotated[int, Field(ge=1)] = 3
    # containers-auth.json(5) or a docker config.json; None: skopeo's own lookup (REGISTRY_AUTH_FILE,
    # $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json). Its content is never logged.
    auth_file: Path | None = None
    # false only for a registry on plain HTTP (a test registry on 127.0.0.1).
    tls_verify: bool = True
    latest_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")] = "latest"
    # Seconds for one push.
    timeout: Annotated[int, Field(gt=0)] = 1800


class Pxe(Strict):
    """The PXE tree (`export: [pxe]`): where its http/ folder will be served from, and boot arguments."""

    # The URL of the tree's http/ folder on the PXE/HTTP server (the boot configs and kickstart name it).
    base_url: Annotated[str, Field(pattern=r"^https?://[^/\s]+(/\S*)?$")]
    # Extra installer kernel arguments for the PXE boot entries (after inst.ks, inst.repo, console=).
    extra_args: tuple[str, ...] = ()


class Spec(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    description: str = ""
    os: Literal["centos", "oraclelinux", "testbed"]
    # The release the media installs (e.g. "7.2"): lets spec rules know what its kernel can do.
    os_release: Annotated[str, Field(pattern=r"^\d+(\.\d+)*$")] | None = None
    media: Media
    kickstart: KickstartSpec
    vm: Vm = Vm()
    boot: Boot = Boot()
    timeouts: Timeouts = Timeouts()
    # Oracle Linux: keep the UEK kernel as default (the policy rule uek-default-vm-import still applies).
    keep_uek: bool = False
    expect: Expect = Expect()
    export: tuple[ExportFormat, ...] = (ExportFormat.QCOW2,)
    container: Container = Container()
    registry: Registry | None = None
    pxe: Pxe | None = None
    aws: Aws | None = None
    ova: Ova = Ova()
    vsphere: Vsphere | None = None
    openstack: Openstack | None = None
    compliance: Compliance | None = None

    # Where the spec was loaded from; relative paths in it are relative to this file's folder.
    source: Path = Path()

    @model_validator(mode="after")
    def _ena_known(self) -> Spec:
        if self.aws is not None and self.aws.ena and self.os_release is not None:
            release = ".".join(self.os_release.split(".")[:2])
            lacking = NO_ENA.get((self.os, release))
            if lacking is not None:
                raise ValueError(
                    f"aws.ena: {lacking}; set aws.ena: false (the AMI then launches only on instance types "
                    "that do not need ENA) or build a release whose kernel has it"
                )
        return self

    @property
    def kickstart_path(self) -> Path:
        return (
            self.kickstart.path if self.kickstart.path.is_absolute() else self.base_dir / self.kickstart.path
        )

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def media_path(self) -> Path | None:
        """The local ISO path (path or path_env), resolved; None for url/builtin media."""
        if self.media.path is not None:
            p = self.media.path
            return p if p.is_absolute() else self.base_dir / p
        if self.media.path_env is not None:
            value = os.environ.get(self.media.path_env)
            if not value:
                raise InputError(
                    f"{self.source}: media.path_env: environment variable {self.media.path_env} is not set "
                    "(set it to the local path of the ISO)"
                )
            return Path(value)
        return None

    @model_validator(mode="after")
    def _target_exports(self) -> Spec:
        # Every target publishes one export: say so now, not after an hour of install.
        needs = {"vsphere": ExportFormat.OVA, "registry": ExportFormat.OCI}
        if self.openstack is not None:
            needs["openstack"] = ExportFormat(self.openstack.disk_format)
        for key, fmt in needs.items():
            if getattr(self, key) is not None and fmt not in self.export:
                raise ValueError(f"{key}: publishes the {fmt} export: add {fmt} to `export`")
        if ExportFormat.PXE in self.export and self.pxe is None:
            raise ValueError("export: pxe needs a `pxe:` section with base_url (where its http/ is served)")
        return self

    def compliance_datastream(self) -> Path | None:
        """The SCAP source datastream the compliance scan uses (None: no compliance section)."""
        if self.compliance is None:
            return None
        if self.compliance.datastream is not None:
            p = self.compliance.datastream
            return p if p.is_absolute() else self.base_dir / p
        from factory.stages.compliance import scap

        return scap.default_datastream(self.os, scap.major_release(self.os_release, self.kickstart.version))

    def digest(self) -> str:
        """sha256 of the spec's content (not its path): part of the build key.

        Not the compliance section: what of it changes the install (the %addon) is in the served kickstart,
        which the key covers too; a new waiver re-runs the scan stage only (its own inputs, see
        factory.stages.compliance.compliance), not the install."""
        return hashlib.sha256(self.model_dump_json(exclude={"source", "compliance"}).encode()).hexdigest()


def _format_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after",)) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    msg = msg.removeprefix("Value error, ")
    if not err["loc"] and re.match(r"^[a-z_]+(\.[a-z_]+)*: ", msg):
        return msg  # a spec-wide rule that names the field it is about
    return f"{loc}: {msg}"


def read_text_file(path: Path, what: str) -> str:
    """Read a user-given text file, or raise one clear InputError (missing, unreadable, empty, binary)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: {what} is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: {what} is not readable (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if not data.strip():
        raise InputError(f"{path}: {what} is empty")
    if b"\0" in data:
        raise InputError(f"{path}: {what} is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def load_spec(path: Path) -> Spec:
    """Load and validate a spec; every problem is reported with its field path."""
    text = read_text_file(path, "spec")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}{where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(path, ["(top level): must be a mapping of fields"])
    raw = dict(raw)
    if "source" in raw:
        raise SpecError(path, ["source: unknown field"])
    raw["source"] = path
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(path, [_format_error(e) for e in exc.errors()]) from None
    if not spec.kickstart_path.is_file():
        raise SpecError(path, [f"kickstart.path: {spec.kickstart_path} does not exist"])
    if spec.compliance is not None:
        from factory.stages.compliance import scap

        problems = scap.spec_problems(spec, require_installed=False)
        if problems:
            raise SpecError(path, problems)
    return spec


def find_specs(root: Path) -> list[Path]:
    return sorted((root / "specs").glob("*.yaml"))
