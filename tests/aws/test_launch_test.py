"""aws.launch_test against the real local moto server: the happy path, and the cleanup on every failure path.

Each failure case asserts through describe_* calls that nothing the launch test created is left (no live
instance, no temporary security group or key pair) and that no older AMI was retired. moto's status checks
are `initializing` for a second after launch (motoserver.py, extension 3), so the waits really wait.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pytest

from factory.errors import EXIT_AWS
from factory.spec import LaunchTest, Spec
from factory.targets.aws.launch_test import (
    TAG,
    LaunchTestError,
    SshTarget,
    SuiteOutcome,
    host_keys,
    runner_cidr,
    ssh_config_text,
    ssh_suite,
    suite_command,
)
from factory.targets.aws.promote import PromoteResult, promote
from factory.targets.aws.session import AwsSettings, open_account
from tests.aws.conftest import FAST, Recorder, make_build, make_keys, make_spec

pytestmark = pytest.mark.aws

PROFILE = "images-prod"  # the first target: the launch test's default account
REGIONS = ("us-east-1", "eu-west-1")
TARGETS_ONE = [{"profile": PROFILE, "regions": {r: "alias/prod" for r in REGIONS}}]


class Suite:
    """The launch test's SSH step, as the tests see it reached: each call's target, the key file's mode
    and first line at that moment, and the outcome to give per region."""

    def __init__(self, settings: AwsSettings, fail_in: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.fail_in = fail_in
        # instance -> its public address as describe_instances showed it during the call
        self.hosts: dict[str, str] = {}
        self.calls: list[SshTarget] = []
        self.key_modes: list[int] = []
        self.key_heads: list[str] = []

    def __call__(self, target: SshTarget, out: Path) -> SuiteOutcome:
        self.calls.append(target)
        ec2 = ec2_in(self.settings, target.region)
        found = ec2.describe_instances(InstanceIds=[target.instance_id])["Reservations"][0]["Instances"][0]
        self.hosts[target.instance_id] = found["PublicIpAddress"]
        self.key_modes.append(stat.S_IMODE(target.key_file.stat().st_mode))
        self.key_heads.append(target.key_file.read_text().splitlines()[0])
        if target.region in self.fail_in:
            return SuiteOutcome("failed", "test_network.py::test_dhcp failed")
        return SuiteOutcome("passed", "12 passed")


@functools.cache
def ec2_in(settings: AwsSettings, region: str) -> Any:
    """One client per region for the test's own describe_* calls (a botocore client costs a second here)."""
    return open_account(PROFILE, settings).ec2(region)


def spec_with(tmp_path: Path, settings: AwsSettings, **launch: Any) -> Any:
    return make_spec(tmp_path, settings, keep=1, targets=TARGETS_ONE, launch_test=launch)


def old_promotion(tmp_path: Path, settings: AwsSettings) -> PromoteResult:
    """The KMS keys, and an earlier build's AMI per region (registered, tagged as the promotion tags its
    copies): what keep=1 retires once this build's AMIs passed their launch test."""
    make_keys(settings, {PROFILE: {r: "alias/prod" for r in REGIONS}})
    amis = {}
    for region in REGIONS:
        ec2 = ec2_in(settings, region)
        amis[region] = ec2.register_image(
            Name=f"testimg-old-{region}",
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            VirtualizationType="hvm",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 1}}],
        )["ImageId"]
        # moto's RegisterImage drops TagSpecifications: tagged afterwards, as promote tags its copies.
        ec2.create_tags(Resources=[amis[region]], Tags=[{"Key": "factory:spec", "Value": "testimg"}])
    return PromoteResult(tmp_path, {PROFILE: amis}, {}, "", ())


def leftovers(settings: AwsSettings) -> dict[str, list[str]]:
    """What the launch test made and did not remove, in every region it ran in, seen through describe_*."""
    found: dict[str, list[str]] = {"instances": [], "groups": [], "keys": []}
    for region in REGIONS:
        ec2 = ec2_in(settings, region)
        for r in ec2.describe_instances()["Reservations"]:
            found["instances"] += [
                i["InstanceId"] for i in r["Instances"] if i["State"]["Name"] not in ("terminated",)
            ]
        found["groups"] += [
            g["GroupId"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"].startswith("factory-launch-test")
        ]
        found["keys"] += [
            k["KeyName"]
            for k in ec2.describe_key_pairs()["KeyPairs"]
            if k["KeyName"].startswith("factory-launch-test")
        ]
    return found


def nothing_left(settings: AwsSettings) -> None:
    assert leftovers(settings) == {"instances": [], "groups": [], "keys": []}


def old_amis_alive(settings: AwsSettings, old: PromoteResult) -> None:
    for region, ami in old.amis[PROFILE].items():
        image = ec2_in(settings, region).describe_images(ImageIds=[ami])["Images"][0]
        assert image["State"] == "available"


def section(build_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((build_path / "promotion.json").read_text())
    return data["launch_test"]


def test_happy_path_launches_waits_saves_console_terminates_then_retires(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)
    suite = Suite(hooked)
    recorder.calls.clear()

    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=suite)

    runs = recorder.ops("RunInstances")
    assert [r["ImageId"] for r in runs] == [result.amis[PROFILE][r] for r in REGIONS]
    assert {r["InstanceType"] for r in runs} == {"t3.micro"}  # aws.ena defaults to true: a Nitro type
    # The waiter polled through moto's "initializing" before both checks were ok.
    assert len(recorder.ops("DescribeInstanceStatus")) >= 2 * len(REGIONS)
    lt = section(b.build.path)
    assert lt["profile"] == PROFILE
    for region, target in zip(REGIONS, suite.calls, strict=True):
        entry = lt["regions"][region]
        assert entry["state"] == "passed"
        assert entry["status_checks"] == "ok"
        assert entry["suite"] == {"result": "passed", "reason": "12 passed"}
        assert entry["ssh_cidr"] == "127.0.0.1/32"  # a local endpoint: no lookup left the machine
        assert target.instance_id == entry["instance_id"]
        assert target.user == "ec2-user"
        instance = ec2_in(hooked, region).describe_instances(InstanceIds=[target.instance_id])[
            "Reservations"
        ][0]["Instances"][0]
        assert target.host == suite.hosts[target.instance_id]
        assert instance["State"]["Name"] == "terminated"
        assert instance["KeyName"] == entry["cleanup"]["key_pair_deleted"]
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [entry["security_group_id"]]
        console = Path(entry["console"])
        assert console.parent == b.build.path / "launch-test" / region
        assert console.read_text().startswith("Linux version")  # base64-decoded
        assert entry["host_keys_pinned"] is False  # moto's sample console has no cloud-init host keys
        assert not target.key_file.exists()  # the temporary private key is gone with the rest
    # The temporary groups admit SSH from the runner only (a local endpoint: loopback).
    for rule in recorder.ops("AuthorizeSecurityGroupIngress"):
        assert rule["IpPermissions"] == [
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "127.0.0.1/32", "Description": "image-factory runner"}],
            }
        ]
    assert len(recorder.ops("AuthorizeSecurityGroupIngress")) == len(REGIONS)
    assert suite.key_modes == [0o600, 0o600]
    assert all(h.startswith("-----BEGIN") for h in suite.key_heads)
    nothing_left(hooked)
    # Retirement came after the launch tests: the last termination precedes the first deregistration.
    names = [n for n, _ in recorder.calls]
    last_terminate = max(i for i, n in enumerate(names) if n == "TerminateInstances")
    assert last_terminate < names.index("DeregisterImage")
    # ...and so did publishing: the SSM parameter points at the new AMIs only once they booted.
    assert last_terminate < names.index("PutParameter")
    assert set(old.amis[PROFILE].values()) <= set(result.retired)
    assert result.launch_test is not None and result.launch_test["regions"].keys() == set(REGIONS)
    # The private key never reaches the manifest.
    assert "PRIVATE KEY" not in (b.build.path / "promotion.json").read_text()


def test_rerun_does_not_relaunch_a_region_that_passed(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)
    with pytest.raises(LaunchTestError, match=r"eu-west-1 .*the acceptance suite failed"):
        promote(
            spec,
            b.build,
            b.raw,
            b.sha256,
            settings=hooked,
            tuning=FAST,
            launch_suite=Suite(hooked, ("eu-west-1",)),
        )
    old_amis_alive(hooked, old)
    recorder.calls.clear()

    result = promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked))

    # us-east-1 passed last time with the same AMI: only eu-west-1 is launched again.
    assert [r["ImageId"] for r in recorder.ops("RunInstances")] == [result.amis[PROFILE]["eu-west-1"]]
    assert {e["state"] for e in section(b.build.path)["regions"].values()} == {"passed"}
    assert set(old.amis[PROFILE].values()) <= set(result.retired)
    nothing_left(hooked)


def test_against_moto_the_ssh_step_is_skipped_with_its_reason_never_passed(
    tmp_path: Path, hooked: AwsSettings
) -> None:
    spec = make_spec(
        tmp_path,
        hooked,
        ena=False,
        targets=[{"profile": PROFILE, "regions": {"us-east-1": "alias/prod"}}],
        launch_test={},
    )
    make_keys(hooked, {PROFILE: {"us-east-1": "alias/prod"}})
    b = make_build(tmp_path)

    promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST)

    entry = section(b.build.path)["regions"]["us-east-1"]
    assert entry["state"] == "suite-skipped"
    assert entry["suite"]["result"] == "skipped"
    assert "local endpoint" in entry["suite"]["reason"]
    assert entry["instance_type"] == "t2.micro"  # ena: false -> a Xen type
    nothing_left(hooked)


def assert_failed_cleanly(
    exc: pytest.ExceptionInfo[BaseException], settings: AwsSettings, old: PromoteResult, recorder: Recorder
) -> None:
    if isinstance(exc.value, LaunchTestError):
        assert exc.value.exit_code == EXIT_AWS
        assert "\n" not in str(exc.value)
    nothing_left(settings)
    old_amis_alive(settings, old)
    assert recorder.ops("DeregisterImage") == []
    # Nothing was published either: no SSM parameter points at an AMI that failed its launch test.
    assert recorder.ops("PutParameter") == []


def test_status_check_timeout_cleans_up_and_retires_nothing(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    # moto's checks stay "initializing" for 1 s: a 0.3 s bound runs out.
    spec = spec_with(tmp_path, hooked, status_timeout=0.3)
    b = make_build(tmp_path)
    suite = Suite(hooked)
    recorder.calls.clear()
    with pytest.raises(LaunchTestError, match=r"status checks not ok \(instance initializing") as exc:
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=suite)
    assert_failed_cleanly(exc, hooked, old, recorder)
    assert suite.calls == []
    entry = section(b.build.path)["regions"]["us-east-1"]
    assert entry["state"] == "failed"
    assert Path(entry["console"]).read_text().startswith("Linux version")  # saved for the post-mortem
    assert "eu-west-1" not in section(b.build.path)["regions"]  # stopped at the first failure


def test_failing_suite_cleans_up_and_retires_nothing(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)
    recorder.calls.clear()
    with pytest.raises(LaunchTestError, match=r"us-east-1 .*suite failed on i-\w+: test_network") as exc:
        promote(
            spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked, REGIONS)
        )
    assert_failed_cleanly(exc, hooked, old, recorder)
    assert json.loads((b.build.path / "promotion.json").read_text())["state"] == "failed"


def test_ctrl_c_inside_the_wait_terminates_and_removes_everything(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)

    def ctrl_c(**_: Any) -> None:
        # A real SIGINT to this process, as the terminal sends on Ctrl-C, while the status wait polls.
        os.kill(os.getpid(), signal.SIGINT)

    recorder.extra.append(lambda core: core.register("before-call.ec2.DescribeInstanceStatus", ctrl_c))
    recorder.calls.clear()
    with pytest.raises(KeyboardInterrupt) as exc:
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked))
    assert_failed_cleanly(exc, hooked, old, recorder)
    assert json.loads((b.build.path / "promotion.json").read_text())["state"] == "interrupted"
    entry = section(b.build.path)["regions"]["us-east-1"]
    assert entry["state"] == "interrupted"
    assert entry["cleanup"]["problems"] == []
    assert len(recorder.ops("TerminateInstances")) == 1


def test_run_instances_failure_with_a_bad_subnet_removes_the_key_pair(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    old = old_promotion(tmp_path, hooked)
    ec2 = ec2_in(hooked, "us-east-1")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    # The operator's own group: used, never deleted by the launch test.
    own = ec2.create_security_group(GroupName="ops-ssh", Description="ops", VpcId=vpc)["GroupId"]
    spec = spec_with(tmp_path, hooked, subnet_id="subnet-0badbadbadbadbad0", security_group_id=own)
    b = make_build(tmp_path)
    recorder.calls.clear()
    with pytest.raises(LaunchTestError, match=r"us-east-1 .*InvalidSubnetID.NotFound") as exc:
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked))
    assert_failed_cleanly(exc, hooked, old, recorder)
    assert len(recorder.ops("RunInstances")) == 1
    assert recorder.ops("TerminateInstances") == []  # nothing was launched
    assert len(recorder.ops("DeleteKeyPair")) == 1
    assert own in [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]]


def test_a_failed_cleanup_is_reported_not_swallowed(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    from botocore.exceptions import ClientError

    old = old_promotion(tmp_path, hooked)
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}}, "DeleteKeyPair")

    recorder.extra.append(lambda core: core.register("before-call.ec2.DeleteKeyPair", refuse))
    recorder.calls.clear()
    with pytest.raises(
        LaunchTestError, match=r"the cleanup failed: key pair factory-launch-test-\S+ not deleted"
    ):
        promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked))
    assert recorder.ops("DeregisterImage") == []
    old_amis_alive(hooked, old)
    # Everything else was undone; the key pair left behind is named in the manifest.
    entry = section(b.build.path)["regions"]["us-east-1"]
    assert entry["cleanup"]["problems"] and "key pair" in entry["cleanup"]["problems"][0]
    left = leftovers(hooked)
    assert left["instances"] == [] and left["groups"] == [] and len(left["keys"]) == 1


def test_a_killed_runs_leftovers_are_swept_before_the_next_launch(
    tmp_path: Path, hooked: AwsSettings
) -> None:
    make_keys(hooked, {PROFILE: {r: "alias/prod" for r in REGIONS}})
    spec = spec_with(tmp_path, hooked)
    b = make_build(tmp_path)
    ec2 = ec2_in(hooked, "us-east-1")
    tags: Any = [{"ResourceType": "instance", "Tags": [{"Key": TAG, "Value": b.build.build_id}]}]
    stray = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, TagSpecifications=tags)
    stray_id = stray["Instances"][0]["InstanceId"]

    promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=Suite(hooked))

    state = ec2.describe_instances(InstanceIds=[stray_id])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "terminated"
    nothing_left(hooked)


def test_the_specs_own_key_pair_is_used_and_left_alone(
    tmp_path: Path, hooked: AwsSettings, recorder: Recorder
) -> None:
    import subprocess

    private = tmp_path / "ops-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    make_keys(hooked, {PROFILE: {"us-east-1": "alias/prod"}})
    ec2 = ec2_in(hooked, "us-east-1")
    ec2.import_key_pair(KeyName="ops", PublicKeyMaterial=private.with_suffix(".pub").read_bytes())
    spec = make_spec(
        tmp_path,
        hooked,
        targets=[{"profile": PROFILE, "regions": {"us-east-1": "alias/prod"}}],
        launch_test={"key_name": "ops", "private_key_file": str(private)},
    )
    b = make_build(tmp_path)
    suite = Suite(hooked)
    recorder.calls.clear()

    promote(spec, b.build, b.raw, b.sha256, settings=hooked, tuning=FAST, launch_suite=suite)

    assert [t.key_file for t in suite.calls] == [private]
    assert [r["KeyName"] for r in recorder.ops("RunInstances")] == ["ops"]
    assert recorder.ops("CreateKeyPair") == [] and recorder.ops("DeleteKeyPair") == []
    assert [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]] == ["ops"]
    assert private.is_file()
    nothing_left(hooked)


# -- the SSH step and the runner's address, without an instance ----------------------------------------


def make_testbed_spec(tmp_path: Path, **fields: Any) -> Spec:
    ks = tmp_path / "t.ks"
    ks.write_text("text\n")
    return Spec.model_validate(
        {
            "name": "testimg",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "X"},
            "kickstart": {"path": str(ks)},
            "source": tmp_path / "spec.yaml",
            **fields,
        }
    )


@pytest.mark.parametrize(("user", "sudo"), [("ec2-user", True), ("root", False)])
def test_the_suite_logs_in_as_the_cloud_user_with_sudo(tmp_path: Path, user: str, sudo: bool) -> None:
    target = SshTarget("us-east-1", "i-0123", "203.0.113.9", user, tmp_path / "key")
    config = tmp_path / "ssh_config"
    command = suite_command(make_testbed_spec(tmp_path), target, config, tmp_path / "junit.xml")
    assert f"--hosts=ssh://{user}@203.0.113.9" in command
    assert f"--ssh-config={config}" in command
    assert ("--sudo" in command) is sudo
    text = ssh_config_text(target, tmp_path / "c-%C", tmp_path / "known_hosts")
    assert f"Host 203.0.113.9\n  User {user}\n  IdentityFile {tmp_path / 'key'}\n  IdentitiesOnly yes" in text
    assert "StrictHostKeyChecking no" in text  # no host keys from the console: nothing to pin


CONSOLE = """[   12.3] cloud-init[811]: Cloud-init v. 22.4.2 running 'modules:final'
ec2: #############################################################
ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
ec2: 256 SHA256:3n0tAr34lF1ng3rpr1nt root@ip-10-0-0-5 (ED25519)
ec2: -----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= root@ip-10-0-0-5
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdGFyZWFsa2V5 root@ip-10-0-0-5
-----END SSH HOST KEY KEYS-----
"""


def test_host_keys_from_the_console_are_pinned(tmp_path: Path) -> None:
    keys = host_keys(CONSOLE)
    assert keys == (
        "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG5vdGFyZWFsa2V5",
    )
    assert host_keys("Linux version 6.1\nlogin:") == ()
    target = SshTarget("us-east-1", "i-0123", "203.0.113.9", "ec2-user", tmp_path / "key", keys)
    text = ssh_config_text(target, tmp_path / "c-%C", tmp_path / "known_hosts")
    assert f"StrictHostKeyChecking yes\n  UserKnownHostsFile {tmp_path / 'known_hosts'}" in text


def test_no_ssh_login_is_a_failed_suite_not_a_pass(tmp_path: Path) -> None:
    # Nothing answers on 127.0.0.1:22 here: the real SSH step gives up after timeouts.ssh and says so.
    key = tmp_path / "key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    spec = make_testbed_spec(tmp_path, timeouts={"ssh": 1})
    target = SshTarget("us-east-1", "i-0123", "127.0.0.1", "ec2-user", key)
    outcome = ssh_suite(spec, target, tmp_path)
    assert outcome.result == "failed"
    assert outcome.reason.startswith("no SSH login as ec2-user@127.0.0.1 within 1 s")


def test_runner_address_stays_on_the_machine_for_a_local_endpoint(outside_world: Any) -> None:
    assert runner_cidr(LaunchTest(), local_endpoint=True) == "127.0.0.1/32"
    assert runner_cidr(LaunchTest(ssh_cidr="198.51.100.0/24"), local_endpoint=False) == "198.51.100.0/24"
    assert outside_world.seen == []


def test_runner_address_lookup_failure_names_the_setting(outside_world: Any) -> None:
    # The outside world (a recording proxy) refuses: the one lookup was tried, and the error says the fix.
    with pytest.raises(LaunchTestError, match=r"checkip\.amazonaws\.com .*set aws\.launch_test\.ssh_cidr"):
        runner_cidr(LaunchTest(), local_endpoint=False)
    assert any("checkip.amazonaws.com" in line for line in outside_world.seen)
