"""aws.launch_test: launch the promoted (encrypted) AMI once per region of one account, before retirement.

    per region: [temporary key pair] -> [temporary security group: tcp 22 from ssh_cidr only]
              -> RunInstances -> waiters instance_running + instance_status_ok (bounded by status_timeout)
              -> console output saved -> acceptance suite over SSH -> terminate (always) -> remove the rest

Whatever happens after the first resource exists (a failed check, a timeout, an exception, Ctrl-C), the
instance is terminated and waited for, then the temporary group and key pair are deleted; a cleanup that
fails is an error naming what is left, never swallowed. Every resource is tagged `factory:launch-test` with
the build id, so a run killed outright (SIGKILL) leaves nothing a re-run does not find and remove first.

The result of each region goes into promotion.json under `launch_test`; a re-run does not launch again in a
region that already passed with the same AMI. Against a local endpoint (`aws.endpoint_url`: moto) nothing
can be logged into, so the SSH step is skipped there with that reason recorded (never reported as passed);
the suite itself is covered by the verify stage's boots.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import secrets
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from factory.core.record import atomic_write_text
from factory.errors import AwsError, FactoryError
from factory.host import tools
from factory.spec import Aws, LaunchTest, Spec
from factory.targets.aws.manifest import Manifest
from factory.targets.aws.session import Account

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger("factory.targets.aws.launch_test")

TAG = "factory:launch-test"
# States of a region that let retirement go on (and that a re-run does not repeat for the same AMI).
DONE = ("passed", "suite-skipped")
# Terminating and deleting get this long, whatever the test's own timeout was.
CLEANUP_TIMEOUT_S = 600.0
CHECKIP_URL = "https://checkip.amazonaws.com"


class LaunchTestError(AwsError):
    """The promoted AMI failed its launch test, or the cleanup after it failed (exit 8, as AWS)."""


@dataclasses.dataclass(frozen=True)
class SshTarget:
    """Where the acceptance suite logs in: the instance's address, the cloud user and the key file."""

    region: str
    instance_id: str
    host: str
    user: str
    key_file: Path
    # The instance's host keys as cloud-init printed them on the console ("type base64" lines); with
    # them SSH insists on exactly those keys, without them it cannot check (recorded as not pinned).
    host_keys: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SuiteOutcome:
    result: str  # passed | failed | skipped
    reason: str = ""
    junit: Path | None = None


# (target, the region's artifact folder) -> outcome. Tests give their own to see the step reached.
SuiteRunner = Callable[[SshTarget, Path], SuiteOutcome]
Report = Callable[[str, str], None]


@dataclasses.dataclass
class _Made:
    """What this run created in one region, in the order it must be undone in reverse."""

    key_name: str | None = None
    group_id: str | None = None
    instance_id: str | None = None
    key_dir: Path | None = None


def account_profile(aws: Aws) -> str:
    lt = aws.launch_test
    return (lt.account if lt is not None and lt.account else None) or aws.targets[0].profile


def run(
    spec: Spec,
    account: Account,
    amis: dict[str, str],
    *,
    manifest: Manifest,
    build_id: str,
    artifacts: Path,
    local_endpoint: bool,
    poll_interval: float,
    report: Report,
    suite: SuiteRunner | None = None,
) -> dict[str, Any]:
    """Launch-test `amis` (region -> AMI id) in `account`; raise LaunchTestError if any region fails.

    Regions are tested one after another, each cleaned up before the next starts; a failing region stops
    the test (the older AMIs are then not retired, so nothing is lost by not trying the rest)."""
    section: dict[str, Any] = manifest.data.setdefault("launch_test", {})
    section["profile"] = account.profile
    regions: dict[str, Any] = section.setdefault("regions", {})
    runner = suite or _default_suite(spec, local_endpoint)
    for region, ami in amis.items():
        entry = regions.get(region, {})
        if entry.get("ami_id") == ami and entry.get("state") in DONE:
            report("launch-test", f"{account.profile}/{region}: {ami} already {entry['state']}")
            continue
        ec2 = account.ec2(region)
        sweep(ec2, build_id)
        regions[region] = {"ami_id": ami, "state": "running", "started": _now()}
        manifest.save()
        place = _Place(region, ami, build_id, artifacts / region, local_endpoint, poll_interval)
        _RegionTest(spec, ec2, place, regions[region], manifest).run(report, runner)
    return section


@dataclasses.dataclass(frozen=True)
class _Place:
    region: str
    ami: str
    build_id: str
    out: Path
    local_endpoint: bool
    poll_interval: float


class _RegionTest:
    """One region: create, launch, wait, look, test; then, whatever happened, undo (see the module doc)."""

    def __init__(
        self, spec: Spec, ec2: EC2Client, place: _Place, entry: dict[str, Any], manifest: Manifest
    ) -> None:
        assert spec.aws is not None and spec.aws.launch_test is not None
        self.spec, self.aws, self.lt = spec, spec.aws, spec.aws.launch_test
        self.ec2, self.place, self.entry, self.manifest = ec2, place, entry, manifest
        self.made = _Made()
        self.where = f"launch test {place.region} ({place.ami})"

    def run(self, report: Report, runner: SuiteRunner) -> None:
        entry, made = self.entry, self.made
        self.place.out.mkdir(parents=True, exist_ok=True)
        failure: BaseException | None = None
        try:
            self.steps(report, runner)
        except KeyboardInterrupt as exc:
            failure = exc
            entry["state"] = "interrupted"
        except LaunchTestError as exc:
            failure = exc
        except (ClientError, BotoCoreError) as exc:
            failure = LaunchTestError(f"{self.where}: {exc}")
        except FactoryError as exc:
            failure = LaunchTestError(f"{self.where}: {exc.message}")
        except Exception as exc:
            # A bug: cleaned up all the same, then raised as it is (the CLI's internal-error path).
            failure = exc
        finally:
            problems = self.undo(failure)
        if problems:
            left = "; ".join(problems)
            if isinstance(failure, KeyboardInterrupt):
                log.error("%s: interrupted, and the cleanup failed: %s", self.where, left)
                raise failure
            first = f"{failure}; and " if failure is not None else f"{self.where}: "
            raise LaunchTestError(f"{first}the cleanup failed: {left}")
        if failure is not None:
            raise failure
        report("launch-test", f"{self.place.region}: {entry['state']} ({made.instance_id} terminated)")

    def steps(self, report: Report, runner: SuiteRunner) -> None:
        entry, made, ec2 = self.entry, self.made, self.ec2
        key_name, key_file = self.key()
        group_id = self.lt.security_group_id or self.group()
        instance = self.launch(key_name, group_id)
        made.instance_id = instance_id = str(instance["InstanceId"])
        entry.update(instance_id=instance_id, instance_type=instance.get("InstanceType"))
        self.manifest.save()
        report("launch-test", f"{self.place.region}: {instance_id} launched from {self.place.ami}")
        entry["status_checks_s"] = _wait_ok(
            ec2, instance_id, self.lt.status_timeout, self.place.poll_interval
        )
        entry["status_checks"] = "ok"
        console = _save_console(ec2, instance_id, self.place.out)
        entry["console"] = str(console)
        keys = host_keys(console.read_text(errors="replace"))
        entry["host_keys_pinned"] = bool(keys)
        address = _address(ec2, instance_id)
        target = SshTarget(self.place.region, instance_id, address, self.lt.user, key_file, keys)
        outcome = runner(target, self.place.out)
        entry["suite"] = {"result": outcome.result, "reason": outcome.reason}
        if outcome.junit is not None:
            entry["suite"]["junit"] = str(outcome.junit)
        if outcome.result == "failed":
            raise LaunchTestError(
                f"{self.where}: the acceptance suite failed on {instance_id}: {outcome.reason}"
            )
        entry["state"] = "passed" if outcome.result == "passed" else "suite-skipped"

    def undo(self, failure: BaseException | None) -> list[str]:
        entry, made = self.entry, self.made
        if failure is not None and entry.get("state") != "interrupted":
            entry["state"] = "failed"
            entry["error"] = str(failure)
        if made.instance_id is not None and "console" not in entry:
            # The console is most useful when the boot went wrong: saved before the instance goes.
            with contextlib.suppress(ClientError, BotoCoreError, OSError):
                entry["console"] = str(_save_console(self.ec2, made.instance_id, self.place.out))
        problems = remove(self.ec2, made)
        entry["cleanup"] = {
            "instance_terminated": made.instance_id,
            "security_group_deleted": made.group_id,
            "key_pair_deleted": made.key_name,
            "problems": problems,
        }
        entry["finished"] = _now()
        self.manifest.save()
        return problems

    def key(self) -> tuple[str, Path]:
        """The spec's key pair and private key file, or a temporary key pair whose private half lives only
        in a 0600 file in a 0700 temporary folder (removed with the rest), never logged or recorded."""
        lt, made = self.lt, self.made
        if lt.key_name is not None and lt.private_key_file is not None:
            path = lt.private_key_file
            path = path if path.is_absolute() else self.spec.base_dir / path
            if not path.is_file():
                raise LaunchTestError(f"aws.launch_test.private_key_file {path} does not exist")
            return lt.key_name, path
        name = f"factory-launch-test-{self.place.build_id}-{self.place.region}-{secrets.token_hex(3)}"
        made.key_dir = Path(tempfile.mkdtemp(prefix="factory-launch-key-"))
        reply = self.ec2.create_key_pair(
            KeyName=name, KeyType="ed25519", TagSpecifications=_tags(self.place.build_id, "key-pair", name)
        )
        made.key_name = name
        key_file = made.key_dir / "id_ed25519"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(reply["KeyMaterial"].rstrip("\n") + "\n")
        return name, key_file

    def group(self) -> str:
        """A temporary security group in the subnet's VPC (or the default VPC): SSH from ssh_cidr only."""
        ec2, build_id = self.ec2, self.place.build_id
        if self.lt.subnet_id is not None:
            vpc = ec2.describe_subnets(SubnetIds=[self.lt.subnet_id])["Subnets"][0]["VpcId"]
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise LaunchTestError(
                    f"{self.where}: the region has no default VPC; set aws.launch_test.subnet_id"
                )
            vpc = vpcs[0]["VpcId"]
        cidr = runner_cidr(self.lt, self.place.local_endpoint)
        name = f"factory-launch-test-{build_id}-{secrets.token_hex(3)}"
        group_id = ec2.create_security_group(
            GroupName=name,
            Description=f"image-factory launch test of build {build_id}: SSH from the runner only, temporary",
            VpcId=vpc,
            TagSpecifications=_tags(build_id, "security-group", name),
        )["GroupId"]
        self.made.group_id = group_id
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": cidr, "Description": "image-factory runner"}],
                }
            ],
        )
        self.entry.update(security_group_id=group_id, ssh_cidr=cidr)
        return group_id

    def launch(self, key_name: str, group_id: str) -> dict[str, Any]:
        build_id, region = self.place.build_id, self.place.region
        args: dict[str, Any] = {}
        if self.lt.subnet_id is not None:
            args["SubnetId"] = self.lt.subnet_id
        name = f"factory-launch-test-{build_id}"
        reply = self.ec2.run_instances(
            ImageId=self.place.ami,
            InstanceType=self.lt.type_for(self.aws.ena),  # type: ignore[arg-type]
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            SecurityGroupIds=[group_id],
            # A new token per attempt: a re-run after a failure must launch anew, not get the old instance.
            ClientToken=f"{build_id}-{region}-{secrets.token_hex(4)}"[:64],
            # If the guest powers itself off, AWS terminates it: nothing is left stopped (EBS still billed).
            InstanceInitiatedShutdownBehavior="terminate",
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[*_tags(build_id, "instance", name), *_tags(build_id, "volume", name)],
            **args,
        )
        return dict(reply["Instances"][0])


# -- the resources ---------------------------------------------------------------------------------------


def _tags(build_id: str, resource: str, name: str) -> list[Any]:
    return [
        {
            "ResourceType": resource,
            "Tags": [{"Key": TAG, "Value": build_id}, {"Key": "Name", "Value": name}],
        }
    ]


def runner_cidr(lt: LaunchTest, local_endpoint: bool) -> str:
    """Who may reach the temporary group's SSH port: the spec's ssh_cidr, else this runner's public
    address as AWS's own checkip service sees it (/32). A local endpoint's instances cannot be reached at
    all, so no lookup leaves the machine for them: loopback only."""
    if lt.ssh_cidr is not None:
        return lt.ssh_cidr
    if local_endpoint:
        return "127.0.0.1/32"
    try:
        # A fresh opener: the proxy settings of this moment (urlopen keeps the first ones it saw).
        with urllib.request.build_opener().open(CHECKIP_URL, timeout=10) as resp:
            address = resp.read().decode().strip()
    except OSError as exc:
        raise LaunchTestError(
            f"cannot learn this runner's public address from {CHECKIP_URL} ({exc}); "
            "set aws.launch_test.ssh_cidr"
        ) from None
    return f"{address}/32"


def _wait_ok(ec2: EC2Client, instance_id: str, timeout: float, poll_interval: float) -> float:
    """Wait for `running`, then for both status checks `ok`, all within `timeout` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    for name in ("instance_running", "instance_status_ok"):
        remaining = max(deadline - time.monotonic(), poll_interval)
        attempts = max(math.ceil(remaining / poll_interval), 1)
        try:
            # botocore sleeps `Delay` as given: a float works (its stubs say int).
            config: Any = {"Delay": poll_interval, "MaxAttempts": attempts}
            ec2.get_waiter(name).wait(InstanceIds=[instance_id], WaiterConfig=config)
        except WaiterError as exc:
            raise LaunchTestError(
                f"launch test: {instance_id}: {_what_is_wrong(name, exc)} "
                f"(aws.launch_test.status_timeout: {timeout:g} s)"
            ) from None
    return round(time.monotonic() - started, 2)


def _what_is_wrong(waiter: str, exc: WaiterError) -> str:
    last: dict[str, Any] = dict(exc.last_response or {})
    if waiter == "instance_running":
        reservations = last.get("Reservations") or [{}]
        instance = (reservations[0].get("Instances") or [{}])[0]
        state = instance.get("State", {}).get("Name", "unknown")
        reason = instance.get("StateReason", {}).get("Message", "")
        return f"not running (state {state}{': ' + reason if reason else ''})"
    statuses = last.get("InstanceStatuses") or [{}]
    inst = statuses[0].get("InstanceStatus", {}).get("Status", "unknown")
    system = statuses[0].get("SystemStatus", {}).get("Status", "unknown")
    return f"status checks not ok (instance {inst}, system {system})"


def _address(ec2: EC2Client, instance_id: str) -> str:
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
    if not address:
        raise LaunchTestError(f"launch test: {instance_id} has no IP address to log in to")
    return str(address)


HOST_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
HOST_KEYS_END = "-----END SSH HOST KEY KEYS-----"


def host_keys(console: str) -> tuple[str, ...]:
    """The host public keys cloud-init writes to the console between its BEGIN/END SSH HOST KEY KEYS
    markers (each line "type base64 [comment]"), as "type base64"; () when the console has none yet."""
    found: list[str] = []
    inside = False
    for line in console.splitlines():
        text = line.strip()
        if HOST_KEYS_BEGIN in text:
            inside, found = True, []
        elif HOST_KEYS_END in text:
            inside = False
        elif inside:
            # Console lines may carry a prefix (a timestamp, "ec2: "): the key starts at its type.
            fields = text.split()
            at = next((i for i, f in enumerate(fields) if f.startswith(("ssh-", "ecdsa-"))), None)
            if at is not None and at + 1 < len(fields):
                found.append(f"{fields[at]} {fields[at + 1]}")
    return tuple(dict.fromkeys(found))


def _save_console(ec2: EC2Client, instance_id: str, out: Path) -> Path:
    """The serial console as the API returns it: base64 text, decoded (empty until AWS has some)."""
    raw = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
    try:
        text = base64.b64decode(raw, validate=True).decode(errors="replace")
    except (binascii.Error, ValueError):
        text = raw  # already plain text (some endpoints decode it themselves)
    path = out / f"{instance_id}.console.log"
    atomic_write_text(path, text)
    return path


def remove(ec2: EC2Client, made: _Made) -> list[str]:
    """Terminate and wait, then delete the group and the key pair; what could not be undone, one line each."""
    problems: list[str] = []
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    if made.instance_id is not None:
        try:
            ec2.terminate_instances(InstanceIds=[made.instance_id])
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=[made.instance_id], WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        except (ClientError, BotoCoreError, WaiterError) as exc:
            problems.append(f"instance {made.instance_id} may still run: {exc}")
    if made.group_id is not None:
        # A group stays "in use" until the instance's network interface is gone, shortly after termination.
        while True:
            try:
                ec2.delete_security_group(GroupId=made.group_id)
                break
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code == "DependencyViolation" and time.monotonic() < deadline:
                    time.sleep(5)
                    continue
                if code != "InvalidGroup.NotFound":
                    problems.append(f"security group {made.group_id} not deleted: {exc}")
                break
            except BotoCoreError as exc:
                problems.append(f"security group {made.group_id} not deleted: {exc}")
                break
    if made.key_name is not None:
        try:
            ec2.delete_key_pair(KeyName=made.key_name)
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"key pair {made.key_name} not deleted: {exc}")
    if made.key_dir is not None:
        shutil.rmtree(made.key_dir, ignore_errors=True)
    return problems


def sweep(ec2: EC2Client, build_id: str) -> None:
    """Remove what an earlier run of this build's launch test left (it was killed before its cleanup)."""
    tagged: list[Any] = [{"Name": f"tag:{TAG}", "Values": [build_id]}]
    alive: list[Any] = [
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    ]
    leftovers: list[_Made] = []
    for reservation in ec2.describe_instances(Filters=[*tagged, *alive])["Reservations"]:
        leftovers += [_Made(instance_id=i["InstanceId"]) for i in reservation["Instances"]]
    leftovers += [
        _Made(group_id=g["GroupId"]) for g in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]
    ]
    leftovers += [_Made(key_name=k["KeyName"]) for k in ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]]
    # Instances first: a group cannot go while an instance uses it.
    for made in leftovers:
        problems = remove(ec2, made)
        if problems:
            raise LaunchTestError(f"leftovers of an earlier launch test: {'; '.join(problems)}")


# -- the acceptance suite over SSH ----------------------------------------------------------------------


def _default_suite(spec: Spec, local_endpoint: bool) -> SuiteRunner:
    if local_endpoint:
        return skipped_suite
    return lambda target, out: ssh_suite(spec, target, out)


def skipped_suite(target: SshTarget, out: Path) -> SuiteOutcome:
    return SuiteOutcome(
        "skipped",
        f"aws.endpoint_url is a local endpoint: {target.instance_id} at {target.host} cannot be logged into "
        "(the suite runs in the verify stage's boots instead)",
    )


def ssh_config_text(target: SshTarget, control_path: Path, known_hosts: Path) -> str:
    """Only the test's key; the host keys from the console pinned when there were any."""
    if target.host_keys:
        checking = ["  StrictHostKeyChecking yes", f"  UserKnownHostsFile {known_hosts}"]
    else:
        # Nothing to check against: the temporary group admits only this runner, and the instance is new.
        checking = ["  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null"]
    lines = [
        f"Host {target.host}",
        f"  User {target.user}",
        f"  IdentityFile {target.key_file}",
        "  IdentitiesOnly yes",
        *checking,
        "  LogLevel ERROR",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        f"  ControlPath {control_path}",
    ]
    return "\n".join(lines) + "\n"


def suite_command(spec: Spec, target: SshTarget, ssh_config: Path, junit: Path) -> list[str]:
    """tests/images over testinfra's SSH backend, as the verify stage runs it, as the cloud user (sudo)."""
    from factory.stages.verify import verify

    sudo = () if target.user == "root" else ("--sudo",)
    return verify.suite_command(spec, 0, ssh_config, junit, user=target.user, host=target.host, extra=sudo)


@contextlib.contextmanager
def _ssh_files(target: SshTarget) -> Iterator[Path]:
    # The ControlPath socket must fit in 107 bytes: a short temporary folder, not the build path.
    folder = Path(tempfile.mkdtemp(prefix="factory-lt-ssh-"))
    try:
        config = folder / "ssh_config"
        known_hosts = folder / "known_hosts"
        atomic_write_text(known_hosts, "".join(f"{target.host} {k}\n" for k in target.host_keys))
        atomic_write_text(config, ssh_config_text(target, folder / "c-%C", known_hosts), mode=0o600)
        yield config
    finally:
        tools.run(["ssh", "-F", str(config), "-O", "exit", target.host], timeout=15, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def ssh_suite(spec: Spec, target: SshTarget, out: Path) -> SuiteOutcome:
    """Wait for SSH (spec.timeouts.ssh), then run the acceptance suite; a failed check is "failed"."""
    from factory.stages.verify.verify import parse_junit, suite_dir

    junit, log_path = out / f"{target.instance_id}.junit.xml", out / f"{target.instance_id}.pytest.log"
    with _ssh_files(target) as config:
        deadline = time.monotonic() + spec.timeouts.ssh
        while True:
            probe = tools.run(["ssh", "-F", str(config), target.host, "true"], timeout=30, check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() >= deadline:
                tail = probe.stderr.decode(errors="replace").strip().splitlines()[-1:]
                return SuiteOutcome(
                    "failed",
                    f"no SSH login as {target.user}@{target.host} within {spec.timeouts.ssh} s"
                    f"{': ' + tail[0] if tail else ''}",
                )
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.1)))
        proc = tools.run(
            suite_command(spec, target, config, junit),
            timeout=spec.timeouts.verify,
            check=False,
            cwd=suite_dir().parent.parent,
        )
    atomic_write_text(log_path, (proc.stdout + proc.stderr).decode(errors="replace"))
    if proc.returncode not in (0, 1):
        return SuiteOutcome("failed", f"the suite could not run (pytest exit status {proc.returncode})")
    summary = parse_junit(junit)
    if proc.returncode != 0 or summary.failed or summary.errors:
        return SuiteOutcome(
            "failed", f"{summary.failed} failed, {summary.errors} errors; see {log_path}", junit
        )
    return SuiteOutcome("passed", f"{summary.passed} passed, {summary.skipped} skipped", junit)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
