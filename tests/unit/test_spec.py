"""factory.spec.load_spec: good specs load; every bad field is reported with its field path (exit 2)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.errors import EXIT_USAGE, InputError, SpecError
from factory.spec import Spec, load_spec

REPO = Path(__file__).resolve().parents[2]
DELETE = object()
_ROLE = "arn:aws:iam::333333333333:role/image-factory-promote"
_WID = {"role_arn": _ROLE, "token_file": "/run/token"}


def base() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((REPO / "specs" / "centos72.yaml").read_text())
    raw["kickstart"]["path"] = str(REPO / "kickstarts" / "centos72.ks")
    return raw


def mutate(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        # A section the base spec leaves out (container) is created empty.
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return raw


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "specs").glob("*.yaml")))
def test_repository_specs_load(name: str) -> None:
    spec = load_spec(REPO / "specs" / f"{name}.yaml")
    assert spec.name == name
    assert spec.kickstart_path.is_file()


MINIMAL = {
    "name": "mini",
    "os": "testbed",
    "media": {"builtin": "testbed", "volume_label": "TESTBED"},
    "kickstart": {"path": str(REPO / "kickstarts" / "centos72.ks")},
}

GOOD = [
    pytest.param(MINIMAL, id="minimal-defaults"),
    pytest.param(base(), id="centos72-full"),
    pytest.param(
        mutate(base(), "media", {"path": "x.iso", "sha256": "0" * 64, "volume_label": "L"}), id="path"
    ),
    pytest.param(
        mutate(base(), "media", {"path_env": "ISO", "sha256_env": "ISO_SHA", "volume_label": "L"}), id="env"
    ),
    pytest.param(mutate(base(), "aws", DELETE), id="no-aws"),
    pytest.param(
        mutate(base(), "kickstart.disabled_rules", [{"rule": "post-no-log", "reason": "logged by syslog"}]),
        id="disabled-rule",
    ),
    pytest.param(mutate(mutate(base(), "aws.upload", "vm-import"), "aws.s3_bucket", "b"), id="vm-import"),
    # Issue 14: GRUB's menu is recognised and the boot line typed at its command line (tests/vm/test_uefi.py).
    pytest.param(
        mutate(mutate(base(), "vm.firmware", "uefi"), "boot.mode", "serial-prompt"), id="uefi-serial-prompt"
    ),
]


@pytest.mark.parametrize("raw", GOOD)
def test_good_specs(tmp_path: Path, raw: dict[str, Any]) -> None:
    spec = load_spec(write(tmp_path, raw))
    assert isinstance(spec, Spec)
    assert spec.source == tmp_path / "spec.yaml"


# (field path, bad value, text every problem list must hold: the field path and what is wrong).
BAD_FIELDS: list[tuple[str, Any, str]] = [
    ("name", "Bad Name", "name: String should match pattern"),
    ("name", DELETE, "name: Field required"),
    ("description", 5, "description: Input should be a valid string"),
    ("os", "ubuntu", "os: Input should be 'centos', 'oraclelinux' or 'testbed'"),
    ("media.url", "ftp://example.com/x.iso", "media.url: must start with http://"),
    ("media.path", "x.iso", "media: give exactly one of url, path, path_env, builtin"),
    ("media.path_env", 5, "media.path_env: Input should be a valid string"),
    ("media.builtin", "other", "media.builtin: Input should be 'testbed'"),
    ("media.sha256", "ABC", "media.sha256: must be 64 lowercase hex digits"),
    ("media.sha256_env", "ISO_SHA", "media: give exactly one of sha256 or sha256_env"),
    ("media.volume_label", DELETE, "media.volume_label: Field required"),
    ("kickstart.path", DELETE, "kickstart.path: Field required"),
    ("kickstart.path", "/nonexistent/x.ks", "kickstart.path: /nonexistent/x.ks does not exist"),
    ("kickstart.version", "RHEL6", "kickstart.version: Input should be 'RHEL7', 'RHEL8' or 'RHEL9'"),
    ("kickstart.disabled_rules", [{"rule": "x"}], "kickstart.disabled_rules.0.reason: Field required"),
    ("kickstart.disabled_rules", [{"rule": "x", "reason": ""}], "kickstart.disabled_rules.0.reason: String"),
    ("vm.memory_mib", 100, "vm.memory_mib: Input should be greater than or equal to 256"),
    ("vm.cpus", 0, "vm.cpus: Input should be greater than or equal to 1"),
    ("vm.disk_gib", 0, "vm.disk_gib: Input should be greater than or equal to 1"),
    ("vm.firmware", "efi", "vm.firmware: Input should be 'bios' or 'uefi'"),
    ("vm.accel", "hvf", "vm.accel: Input should be 'auto', 'kvm' or 'tcg'"),
    ("boot.mode", "http", "boot.mode: Input should be 'kernel', 'serial-prompt' or 'pxe'"),
    ("boot.extra_args", "quiet", "boot.extra_args: Input should be a valid tuple"),
    ("timeouts.install", 0, "timeouts.install: Input should be greater than 0"),
    ("timeouts.idle", -1, "timeouts.idle: Input should be greater than 0"),
    ("timeouts.kickstart_fetch", 0, "timeouts.kickstart_fetch: Input should be greater than 0"),
    ("timeouts.boot_prompt", 0, "timeouts.boot_prompt: Input should be greater than 0"),
    ("timeouts.ssh", 0, "timeouts.ssh: Input should be greater than 0"),
    ("timeouts.verify", 0, "timeouts.verify: Input should be greater than 0"),
    ("keep_uek", "maybe", "keep_uek: Input should be a valid boolean"),
    ("expect.interfaces_onboot", "eth0", "expect.interfaces_onboot: Input should be a valid tuple"),
    ("expect.kernel", "xen", "expect.kernel: Input should be 'rhck', 'uek' or 'any'"),
    ("expect.packages_required", [5], "expect.packages_required.0: Input should be a valid string"),
    ("expect.packages_forbidden", [5], "expect.packages_forbidden.0: Input should be a valid string"),
    ("expect.services_enabled", [5], "expect.services_enabled.0: Input should be a valid string"),
    ("expect.services_running", [5], "expect.services_running.0: Input should be a valid string"),
    ("expect.ssh_service", 5, "expect.ssh_service: Input should be a valid string"),
    ("expect.selinux", "on", "expect.selinux: Input should be"),
    ("expect.serial_console", "maybe", "expect.serial_console: Input should be a valid boolean"),
    ("expect.cloud_init", "maybe", "expect.cloud_init: Input should be a valid boolean"),
    ("expect.target_boots", ["gcp"], "expect.target_boots.0: Input should be 'aws', 'openstack'"),
    ("expect.root_password", "empty", "expect.root_password: Input should be"),
    ("expect.filesystems", [{"mount": "/"}], "expect.filesystems.0.fstype: Field required"),
    (
        "expect.filesystems.0.min_size_gib",
        0,
        "expect.filesystems.0.min_size_gib: Input should be greater than 0",
    ),
    ("expect.skip", [{"rule": "x"}], "expect.skip.0.reason: Field required"),
    ("export", ["iso"], "export.0: Input should be 'raw', 'qcow2', 'vmdk', 'vhd', 'ova', 'oci' or 'pxe'"),
    ("container", "oci", "container: Input should be a valid dictionary or instance of Container"),
    ("container.exclude", ["boot/*"], "container.exclude: 'boot/*': patterns are absolute paths"),
    ("container.exclude_extra", ["/"], "container.exclude_extra: '/': patterns are absolute"),
    ("container.cmd", "/bin/sh", "container.cmd: Input should be a valid tuple"),
    ("container.env", ["PATH"], "container.env: 'PATH' is not KEY=value"),
    ("container.labels", {"a": 1}, "container.labels.a: Input should be a valid string"),
    ("container.source", 5, "container.source: Input should be a valid string"),
    ("registry", "x", "registry: Input should be a valid dictionary"),
    ("registry", {"url": "r.example.org", "repository": "x"}, "registry: publishes the oci export: add oci"),
    ("export", ["qcow2", "pxe"], "export: pxe needs a `pxe:` section with base_url"),
    ("pxe", "x", "pxe: Input should be a valid dictionary"),
    ("pxe.base_url", "ftp://x/y", "pxe.base_url: String should match pattern"),
    ("pxe.extra_args", "quiet", "pxe.extra_args: Input should be a valid tuple"),
    ("registry.url", "https://r.example.org", "registry.url: String should match pattern"),
    ("registry.repository", "Factory/TB", "registry.repository: String should match pattern"),
    ("registry.keep", 0, "registry.keep: Input should be greater than or equal to 1"),
    ("registry.auth_file", 5, "registry.auth_file: Input is not a valid path"),
    ("registry.tls_verify", "maybe", "registry.tls_verify: Input should be a valid boolean"),
    ("registry.latest_tag", "-x", "registry.latest_tag: String should match pattern"),
    ("registry.timeout", 0, "registry.timeout: Input should be greater than 0"),
    ("ova", "x", "ova: Input should be a valid dictionary"),
    ("vsphere", "x", "vsphere: Input should be a valid dictionary"),
    ("openstack", "x", "openstack: Input should be a valid dictionary"),
    ("aws.upload", "ftp", "aws.upload: Input should be 'ebs-direct' or 'vm-import'"),
    ("aws.upload", "vm-import", "aws: upload: vm-import needs s3_bucket"),
    ("aws.source_profile", DELETE, "aws.source_profile: Field required"),
    ("aws.source_region", 5, "aws.source_region: Input should be a valid string"),
    ("aws.s3_bucket", 5, "aws.s3_bucket: Input should be a valid string"),
    ("aws.ena", "maybe", "aws.ena: Input should be a valid boolean"),
    ("aws.ami_name", 5, "aws.ami_name: Input should be a valid string"),
    ("aws.keep", -1, "aws.keep: Input should be greater than or equal to 0"),
    ("aws.ssm_parameter", "images/x", "aws: ssm_parameter must start with '/'"),
    ("aws.targets", [], "aws: targets: at least one target account"),
    ("aws.copy_timeout", 0, "aws.copy_timeout: Input should be greater than 0"),
    ("aws.endpoint_url", 5, "aws.endpoint_url: Input should be a valid string"),
    ("aws.targets.0.profile", DELETE, "aws.targets.0.profile: Field required"),
    ("aws.targets.0.regions", {}, "aws.targets.0.regions: at least one region"),
    ("aws.targets.0.regions", {"mars-1": "k"}, "aws.targets.0.regions: 'mars-1' is not an AWS region name"),
    ("aws.targets.0.regions", {"us-east-1": ""}, "aws.targets.0.regions: region us-east-1 has no KMS key"),
    ("aws.targets.0.share_with", ["123"], "aws.targets.0.share_with.0: String should match pattern"),
    ("aws.targets.0.kms_grants", "always", "aws.targets.0.kms_grants: Input should be 'check' or 'create'"),
    ("aws.launch_test", "x", "aws.launch_test: Input should be a valid dictionary"),
    ("aws.launch_test.enabled", "maybe", "aws.launch_test.enabled: Input should be a valid boolean"),
    ("aws.launch_test.account", "nobody", "aws: launch_test.account 'nobody' is not one of the targets'"),
    ("aws.launch_test.instance_type", 5, "aws.launch_test.instance_type: Input should be a valid string"),
    ("aws.launch_test.subnet_id", "vpc-12345678", "aws.launch_test.subnet_id: String should match pattern"),
    ("aws.launch_test.security_group_id", "sg-x", "aws.launch_test.security_group_id: String should match"),
    ("aws.launch_test.key_name", "ops", "aws.launch_test: give key_name and private_key_file together"),
    ("aws.launch_test.private_key_file", 5, "aws.launch_test.private_key_file: Input is not a valid path"),
    ("aws.launch_test.ssh_cidr", "10.0.0.1/40", "aws.launch_test: ssh_cidr '10.0.0.1/40' is not a network"),
    (
        "aws.launch_test",
        {"ssh_cidr": "203.0.113.7/32", "security_group_id": "sg-0123456789abcdef0"},
        "aws.launch_test: ssh_cidr is for the temporary security group; not with security_group_id",
    ),
    ("aws.launch_test.user", "Root User", "aws.launch_test.user: String should match pattern"),
    ("aws.launch_test.status_timeout", 0, "aws.launch_test.status_timeout: Input should be greater than 0"),
    ("aws.launch_test.colour", "blue", "aws.launch_test.colour: unknown field"),
    ("os_release", "seven", "os_release: String should match pattern"),
    ("media", DELETE, "media: Field required"),
    ("kickstart", "x.ks", "kickstart: Input should be a valid dictionary"),
    ("vm", "big", "vm: Input should be a valid dictionary"),
    ("boot", 5, "boot: Input should be a valid dictionary"),
    ("timeouts", 5, "timeouts: Input should be a valid dictionary"),
    ("expect", [], "expect: Input should be a valid dictionary"),
    ("aws", "x", "aws: Input should be a valid dictionary"),
    ("kickstart.disabled_rules", [{"reason": "because"}], "kickstart.disabled_rules.0.rule: Field required"),
    ("expect.filesystems.0.mount", DELETE, "expect.filesystems.0.mount: Field required"),
    ("expect.filesystems.0.fstype", 5, "expect.filesystems.0.fstype: Input should be a valid string"),
    ("expect.skip", [{"reason": "because"}], "expect.skip.0.rule: Field required"),
    ("colour", "blue", "colour: unknown field"),
    ("vm.colour", "blue", "vm.colour: unknown field"),
    ("aws.targets.0.colour", "blue", "aws.targets.0.colour: unknown field"),
    ("source", "/etc/passwd", "source: unknown field"),
    ("compliance", "x", "compliance: Input should be a valid dictionary"),
    ("compliance.profile", DELETE, "compliance.profile: Field required"),
    (
        "compliance.profile",
        "xccdf_nope",
        "compliance.profile: 'xccdf_nope' is not a profile of ssg-centos7-ds.xml",
    ),
    ("compliance.datastream", 5, "compliance.datastream: Input is not a valid path"),
    (
        "compliance.remediate_at_install",
        "maybe",
        "compliance.remediate_at_install: Input should be a valid boolean",
    ),
    ("compliance.waivers", [{"rule": "r"}], "compliance.waivers.0.reason: Field required"),
    ("compliance.waivers", [{"reason": "because"}], "compliance.waivers.0.rule: Field required"),
    *(
        row
        for where in ("aws.source_web_identity", "aws.targets.0.web_identity")
        for row in (
            (where, "x", f"{where}: Input should be a valid dictionary"),
            (where, {"role_arn": _ROLE}, f"{where}: give exactly one of token_file or token_from"),
            *(
                (where, {**_WID, field: bad}, f"{where}.{field}: {problem}")
                for field, bad, problem in (
                    ("role_arn", "arn:aws:iam::1:user/x", "String should match pattern"),
                    ("token_file", 5, "Input is not a valid path"),
                    ("token_from", "gitlab", "Input should be 'github-actions'"),
                    ("audience", 5, "Input should be a valid string"),
                    ("session_name", "a b", "String should match pattern"),
                    ("duration_seconds", 50000, "Input should be less than or equal to 43200"),
                )
            ),
        )
    ),
]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    BAD_FIELDS,
    ids=[f"{f}={'deleted' if v is DELETE else v!r}" for f, v, _ in BAD_FIELDS],
)
def test_bad_field(tmp_path: Path, field: str, value: Any, problem: str) -> None:
    path = write(tmp_path, mutate(base(), field, value))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_USAGE
    assert any(problem in p for p in info.value.problems), info.value.problems
    assert "\n" not in info.value.message and info.value.message.startswith(f"{path}: ")


def platforms() -> dict[str, Any]:
    """The centos spec with a vSphere and an OpenStack target (and the exports they publish)."""
    raw = mutate(base(), "export", ["raw", "qcow2", "ova"])
    raw["vsphere"] = {
        "url": "https://vcenter.example.com/sdk",
        "datacenter": "DC0",
        "cluster": "DC0_C0",
        "datastore": "LocalDS_0",
        "folder": "templates",
        "network": "VM Network",
    }
    raw["ova"] = {"hardware_version": 14, "nic": "vmxnet3"}
    raw["openstack"] = {"clouds": [{"cloud": "prod", "region": "RegionOne", "share_with": ["p1"]}]}
    return raw


BAD_PLATFORM_FIELDS: list[tuple[str, Any, str]] = [
    ("ova.hardware_version", 4, "ova.hardware_version: Input should be greater than or equal to 7"),
    ("ova.nic", "rtl8139", "ova.nic: Input should be 'vmxnet3' or 'e1000'"),
    ("ova.serial_port", "maybe", "ova.serial_port: Input should be a valid boolean"),
    ("vsphere.url", "vcenter.example.com", "vsphere.url: String should match pattern"),
    ("vsphere.datacenter", DELETE, "vsphere.datacenter: Field required"),
    ("vsphere.cluster", DELETE, "vsphere: give exactly one of cluster or resource_pool"),
    ("vsphere.resource_pool", "pool", "vsphere: give exactly one of cluster or resource_pool"),
    ("vsphere.datastore", DELETE, "vsphere.datastore: Field required"),
    ("vsphere.folder", 5, "vsphere.folder: Input should be a valid string"),
    ("vsphere.network", DELETE, "vsphere.network: Field required"),
    ("vsphere.template_name", "{name}", "vsphere: template_name must contain {build_id}"),
    ("vsphere.keep", 0, "vsphere.keep: Input should be greater than or equal to 1"),
    ("vsphere.credentials_file", [], "vsphere.credentials_file: Input is not a valid path"),
    ("vsphere.insecure", "maybe", "vsphere.insecure: Input should be a valid boolean"),
    ("vsphere.timeout", 0, "vsphere.timeout: Input should be greater than 0"),
    ("openstack.disk_format", "vmdk", "openstack.disk_format: Input should be 'qcow2' or 'raw'"),
    ("openstack.image_name", "{name}", "openstack: image_name must contain {build_id}"),
    ("openstack.keep", 0, "openstack.keep: Input should be greater than or equal to 1"),
    ("openstack.os_distro", 5, "openstack.os_distro: Input should be a valid string"),
    ("openstack.os_version", 7, "openstack.os_version: Input should be a valid string"),
    ("openstack.hw_disk_bus", "nvme", "openstack.hw_disk_bus: Input should be"),
    ("openstack.hw_vif_model", "vmxnet3", "openstack.hw_vif_model: Input should be"),
    ("openstack.hw_qemu_guest_agent", "maybe", "openstack.hw_qemu_guest_agent: Input should be a valid"),
    ("openstack.min_ram_mib", -1, "openstack.min_ram_mib: Input should be greater than or equal to 0"),
    ("openstack.latest_tag", 5, "openstack.latest_tag: Input should be a valid string"),
    ("openstack.clouds", [], "openstack: clouds: at least one cloud"),
    ("openstack.timeout", 0, "openstack.timeout: Input should be greater than 0"),
    ("openstack.clouds.0.cloud", DELETE, "openstack.clouds.0.cloud: Field required"),
    ("openstack.clouds.0.region", 5, "openstack.clouds.0.region: Input should be a valid string"),
    ("openstack.clouds.0.visibility", "public", "openstack.clouds.0: share_with needs visibility shared"),
    ("openstack.clouds.0.share_with", "p1", "openstack.clouds.0.share_with: Input should be a valid tuple"),
    (
        "openstack.clouds.0.accept_as",
        "p1",
        "openstack.clouds.0.accept_as: Input should be a valid dictionary",
    ),
    (
        "openstack.clouds.0.accept_as",
        {"p9": "c"},
        "openstack.clouds.0: accept_as names projects not in share_with",
    ),
    ("export", ["raw", "qcow2"], "vsphere: publishes the ova export: add ova to `export`"),
    ("export", ["raw", "ova"], "openstack: publishes the qcow2 export: add qcow2 to `export`"),
]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    BAD_PLATFORM_FIELDS,
    ids=[f"{f}={'deleted' if v is DELETE else v!r}" for f, v, _ in BAD_PLATFORM_FIELDS],
)
def test_bad_platform_field(tmp_path: Path, field: str, value: Any, problem: str) -> None:
    path = write(tmp_path, mutate(platforms(), field, value))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_USAGE
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_platform_targets_load(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, platforms()))
    assert spec.vsphere is not None and spec.vsphere.cluster == "DC0_C0"
    assert spec.openstack is not None and spec.openstack.clouds[0].share_with == ("p1",)
    assert spec.ova.hardware_version == 14


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    raw = mutate(mutate(base(), "vm.cpus", 0), "timeouts.ssh", 0)
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, raw))
    assert len(info.value.problems) == 2
    assert "(and 1 more)" in info.value.message


def test_every_field_has_a_bad_case() -> None:
    # A new spec field needs its own row in BAD_FIELDS.
    def fields(model: Any, prefix: str) -> set[str]:
        out = set()
        for name, info in model.model_fields.items():
            out.add(prefix + name)
            sub = info.annotation
            for candidate in (sub, *getattr(sub, "__args__", ())):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    out |= fields(candidate, f"{prefix}{name}.")
        return out

    # A field is covered by a row that sets it or whose expected problem names it; list indexes dropped.
    rows = BAD_FIELDS + BAD_PLATFORM_FIELDS
    paths = {f for f, _, _ in rows} | {problem.split(":")[0] for _, _, problem in rows}
    covered = {p.replace(".0.", ".").removesuffix(".0") for p in paths}
    missing = fields(Spec, "") - covered - {"source"}
    assert not missing, f"no bad case for: {sorted(missing)}"


BAD_FILES: list[tuple[str, bytes | None, str]] = [
    ("missing", None, "spec not found"),
    ("empty", b"", "spec is empty"),
    ("binary", b"name: x\x00\x01", "spec is a binary file"),
    ("not-utf8", b"name: \xff\n", "spec is not UTF-8 text"),
    ("bad-yaml", b"name: [unclosed\nos: centos\n", "not valid YAML"),
    ("not-a-mapping", b"- a\n- b\n", "(top level): must be a mapping of fields"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_FILES, ids=[c for c, _, _ in BAD_FILES])
def test_bad_file(tmp_path: Path, case: str, content: bytes | None, message: str) -> None:
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_spec(path)
    assert info.value.exit_code == EXIT_USAGE
    assert message in info.value.message


@pytest.mark.parametrize(
    ("os_name", "release"),
    [("centos", "7.2"), ("centos", "7.3"), ("oraclelinux", "7.2"), ("centos", "7.2.1511")],
    ids=["centos-7.2", "centos-7.3", "oraclelinux-7.2", "centos-7.2.1511"],
)
def test_ena_true_for_a_release_without_ena_is_a_spec_error_with_the_fix(
    tmp_path: Path, os_name: str, release: str
) -> None:
    raw = mutate(mutate(mutate(base(), "aws.ena", True), "os_release", release), "os", os_name)
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, raw))
    problem = info.value.problems[0]
    assert problem.startswith("aws.ena: ")
    assert "has no ena module (ENA arrived in the EL 7.4 kernel)" in problem
    assert "set aws.ena: false" in problem
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("release", "ena"),
    [("7.4", True), ("7.2", False), (None, True)],
    ids=["7.4-ena", "7.2-no-ena", "unknown"],
)
def test_ena_rule_accepts_what_the_kernel_can_do(tmp_path: Path, release: str | None, ena: bool) -> None:
    raw = mutate(base(), "aws.ena", ena)
    raw = mutate(raw, "os_release", DELETE) if release is None else mutate(raw, "os_release", release)
    assert load_spec(write(tmp_path, raw)).aws is not None
