"""Promotion: upload the verified raw image once, copy it encrypted into every account and region, publish.

    gate -> preflight (profiles, identities, KMS keys) -> source AMI (upload + register, unencrypted)
         -> share with target accounts -> CopyImage(Encrypted, region's KMS key) everywhere -> wait
         -> [aws.launch_test: boot one instance per region of one account, see launch_test.py]
         -> tag, share_with, SSM parameter -> retire the source AMI and AMIs beyond `keep`

Preflight also makes sure every `share_with` account may use the region's KMS key (kms_access.py): the
copies are encrypted, and an account that may not use the key cannot launch the AMI shared with it.

The source is uploaded unencrypted and encrypted on copy: an encrypted source could only be copied by
another account with grants on the source account's KMS key. Nothing is deleted before every encrypted copy
is available; nothing an SSM parameter points to is ever deleted. promotion.json (see manifest.py) is
written after every step; a re-run finds what exists (manifest, AMI names, client tokens) and finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import AwsError, FactoryError
from factory.spec import Aws, KmsGrants, Spec, Target, UploadMethod
from factory.stages.compliance import compliance
from factory.stages.promote.gate import require_verified
from factory.targets.aws import ebs_direct, kms_access, launch_test, vm_import
from factory.targets.aws.local import LOCAL, local_aws, profiles
from factory.targets.aws.manifest import Manifest
from factory.targets.aws.session import Account, AwsSettings, spec_account

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_kms import KMSClient

log = logging.getLogger("factory.targets.aws.promote")


@dataclasses.dataclass(frozen=True)
class PromoteEvent:
    """One progress report: `step` is a stable name (upload, copy, wait, publish, retire...)."""

    step: str
    detail: str
    done: int = 0
    total: int = 0


Progress = Callable[[PromoteEvent], None]


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Knobs that are not part of the spec: polling and upload parallelism (tests make them small)."""

    poll_interval: float = 15.0
    workers: int = 8
    block_attempts: int = 4
    backoff: float = 0.5


@dataclasses.dataclass(frozen=True)
class PromoteResult:
    manifest: Path
    # profile -> region -> encrypted AMI id
    amis: dict[str, dict[str, str]]
    # profile -> region -> SSM parameter name now pointing at that AMI (empty without aws.ssm_parameter)
    ssm: dict[str, dict[str, str]]
    source_ami: str
    # AMI ids deregistered by this run (the unencrypted source, AMIs beyond `keep`)
    retired: tuple[str, ...]
    # promotion.json's `launch_test` section (profile, per region: instance, console, suite, state)
    launch_test: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class CleanupResult:
    manifest: Path
    removed_amis: tuple[str, ...]
    removed_snapshots: tuple[str, ...]
    # AMIs left alone because an SSM parameter points to them
    kept: tuple[str, ...]


def _aws(spec: Spec) -> Aws:
    if spec.aws is None:
        raise AwsError(f"{spec.source}: the spec has no aws section: nothing to promote to")
    return spec.aws


@contextlib.contextmanager
def aws_settings(spec: Spec, settings: AwsSettings | None) -> Iterator[AwsSettings]:
    """The settings to use: given ones, the embedded local AWS (`endpoint_url: local`), or real AWS."""
    aws = _aws(spec)
    if settings is not None:
        yield settings
    elif aws.endpoint_url == LOCAL:
        with local_aws(spec) as local:
            yield local.settings
    else:
        yield AwsSettings(endpoint_url=aws.endpoint_url)


def promote(
    spec: Spec,
    build: BuildDir,
    raw_image: Path,
    image_sha256: str,
    *,
    progress: Progress | None = None,
    settings: AwsSettings | None = None,
    tuning: Tuning = Tuning(),
    launch_suite: launch_test.SuiteRunner | None = None,
) -> PromoteResult:
    """Promote a verified raw image to every account and region of `spec.aws` (see the module doc).

    `launch_suite` replaces the launch test's SSH step (default: the acceptance suite over SSH; skipped,
    with the reason recorded, against a local endpoint)."""
    aws = _aws(spec)
    # First of all: an unverified image never leaves the factory, not even as a pending snapshot.
    require_verified(build, image_sha256)
    # ...and a spec asking for compliance publishes only a sealed image whose scan passed the gate.
    compliance_tags(spec, build)
    if not raw_image.is_file():
        raise AwsError(f"{raw_image}: the raw image to promote does not exist")
    manifest = Manifest.load(build.path, build_id=build.build_id, spec=spec.name, image_sha256=image_sha256)
    with aws_settings(spec, settings) as resolved:
        run = _Run(
            spec, aws=aws, build=build, manifest=manifest, settings=resolved, progress=progress, tuning=tuning
        )
        try:
            return run.promote(raw_image, image_sha256, launch_suite)
        except FactoryError as exc:
            manifest.set_state("failed", str(exc))
            raise
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            manifest.set_state("failed", str(exc))
            raise AwsError(f"promotion of build {build.build_id} failed: {exc}") from None
        except KeyboardInterrupt:
            # Ctrl-C: what ran last (e.g. the launch test) cleaned up after itself; the manifest says so.
            manifest.set_state("interrupted")
            raise


def cleanup(spec: Spec, build: BuildDir, *, settings: AwsSettings | None = None) -> CleanupResult:
    """Remove a build's AMIs and snapshots in every account and region, except what SSM points to."""
    aws = _aws(spec)
    manifest = Manifest.load(build.path, build_id=build.build_id, spec=spec.name, image_sha256="")
    with aws_settings(spec, settings) as resolved:
        run = _Run(
            spec, aws=aws, build=build, manifest=manifest, settings=resolved, progress=None, tuning=Tuning()
        )
        try:
            return run.cleanup()
        except (ClientError, BotoCoreError) as exc:
            raise AwsError(f"cleanup of build {build.build_id} failed: {exc}") from None


def compliance_tags(spec: Spec, build: BuildDir) -> dict[str, str]:
    """The compliance result as AMI tags (factory:compliance-profile, ...-passed, ...-report-sha256...)."""
    return {f"factory:compliance-{k}": v for k, v in compliance.publish_metadata(spec, build).items()}


def _tags(d: dict[str, str]) -> list[Any]:
    return [{"Key": k, "Value": v} for k, v in d.items()]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Run:
    """One promotion (or cleanup) of one build: the accounts, the manifest, and the steps in order."""

    def __init__(
        self,
        spec: Spec,
        *,
        aws: Aws,
        build: BuildDir,
        manifest: Manifest,
        settings: AwsSettings,
        progress: Progress | None,
        tuning: Tuning,
    ) -> None:
        self.spec, self.aws, self.build, self.manifest = spec, aws, build, manifest
        self.tuning = tuning
        self.settings = settings
        self._progress = progress
        # Every profile is opened up front: an unknown one fails before anything is uploaded.
        self.accounts = {p: spec_account(aws, p, settings) for p in profiles(aws)}
        created = str(build.record.get("created", ""))[:10].replace("-", "") or build.build_id[:8]
        self.name = aws.ami_name.format(name=spec.name, build_id=build.build_id, date=created)
        self.source_name = f"{self.name}-source"

    # -- small helpers -------------------------------------------------------------------------------

    def report(self, step: str, detail: str, done: int = 0, total: int = 0) -> None:
        log.info("%s: %s", step, detail)
        if self._progress is not None:
            self._progress(PromoteEvent(step, detail, done, total))

    def token(self, *parts: str) -> str:
        """A ClientToken derived from the build and the place: a re-sent request never duplicates."""
        return digest.combine(self.build.build_id, *parts)[:48]

    def tags(self, image_sha256: str, name: str) -> dict[str, str]:
        inputs = self.build.record.get("inputs") or {}
        return {
            "Name": name,
            "factory:spec": self.spec.name,
            "factory:build-id": self.build.build_id,
            "factory:image-sha256": image_sha256,
            "factory:kickstart-sha256": str(inputs.get("kickstart_sha256", "unknown")),
            **compliance_tags(self.spec, self.build),
        }

    def source_ec2(self) -> EC2Client:
        return self.accounts[self.aws.source_profile].ec2(self.aws.source_region)

    @staticmethod
    def describe_image(ec2: EC2Client, ami_id: str) -> dict[str, Any] | None:
        try:
            images = ec2.describe_images(ImageIds=[ami_id])["Images"]
        except ClientError as exc:
            if _error_code(exc).startswith("InvalidAMIID"):
                return None
            raise
        return dict(images[0]) if images else None

    @staticmethod
    def find_by_name(ec2: EC2Client, name: str) -> dict[str, Any] | None:
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        live = [dict(i) for i in images if i.get("State") not in ("deregistered", "failed", "invalid")]
        return live[0] if live else None

    @staticmethod
    def image_snapshots(image: dict[str, Any]) -> list[str]:
        return [
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]

    def ssm_targets(self, account: Account, region: str) -> set[str]:
        """AMI ids that an SSM parameter named by the spec points to in this account/region."""
        if self.aws.ssm_parameter is None:
            return set()
        ssm = account.ssm(region)
        try:
            return {ssm.get_parameter(Name=self.aws.ssm_parameter)["Parameter"]["Value"]}
        except ssm.exceptions.ParameterNotFound:
            return set()

    def delete_image(self, ec2: EC2Client, ami_id: str, extra_snapshots: list[str]) -> list[str]:
        """Deregister an AMI, then delete its snapshots (a snapshot in use by an AMI cannot go first)."""
        image = self.describe_image(ec2, ami_id)
        snapshots = list(dict.fromkeys([*(self.image_snapshots(image) if image else []), *extra_snapshots]))
        if image is not None and image.get("State") != "deregistered":
            ec2.deregister_image(ImageId=ami_id)
        deleted = []
        for snap in snapshots:
            try:
                ec2.delete_snapshot(SnapshotId=snap)
                deleted.append(snap)
            except ClientError as exc:
                if not _error_code(exc).startswith("InvalidSnapshot"):
                    raise
        return deleted

    # -- promotion -----------------------------------------------------------------------------------

    def promote(
        self, raw: Path, image_sha256: str, launch_suite: launch_test.SuiteRunner | None = None
    ) -> PromoteResult:
        self.manifest.set_state("running")
        ids = self.preflight()
        if self.manifest.source.get("ami_state") == "deregistered" and self.copies_exist():
            # An earlier run got past the copies and retired the source: nothing to upload again.
            source_ami = self.manifest.source["ami_id"]
        else:
            source_ami, source_snaps = self.ensure_source(raw, image_sha256)
            self.share_source(source_ami, source_snaps, ids)
            for target in self.aws.targets:
                for region in target.regions:
                    self.ensure_copy(target.profile, region, source_ami, image_sha256)
        self.wait_copies()
        # The new AMIs boot (aws.launch_test) before the SSM parameter points at them or anything is
        # retired; a failure raises, publishing and retiring nothing.
        launched = self.launch_test(launch_suite)
        ssm: dict[str, dict[str, str]] = {}
        for target in self.aws.targets:
            for region in target.regions:
                self.finish_copy(target.profile, region, target.share_with, image_sha256)
                if self.aws.ssm_parameter is not None:
                    ssm.setdefault(target.profile, {})[region] = self.aws.ssm_parameter
        # Only now, with every encrypted copy available everywhere, may anything be deleted.
        retired = [*self.retire_source(), *self.retire_old()]
        self.manifest.set_state("complete")
        return PromoteResult(
            self.manifest.path, self.manifest.amis(), ssm, source_ami, tuple(retired), launched
        )

    def launch_test(self, suite: launch_test.SuiteRunner | None) -> dict[str, Any] | None:
        lt = self.aws.launch_test
        if lt is None or not lt.enabled:
            return None
        profile = launch_test.account_profile(self.aws)
        target = next(t for t in self.aws.targets if t.profile == profile)
        amis = {r: str(self.manifest.copy(profile, r)["ami_id"]) for r in target.regions}
        return launch_test.run(
            self.spec,
            self.accounts[profile],
            amis,
            manifest=self.manifest,
            build_id=self.build.build_id,
            artifacts=self.build.path / "launch-test",
            local_endpoint=self.settings.endpoint_url is not None,
            poll_interval=self.tuning.poll_interval,
            report=self.report,
            suite=suite,
        )

    def copies_exist(self) -> bool:
        for target in self.aws.targets:
            for region in target.regions:
                ami = self.manifest.copy(target.profile, region).get("ami_id")
                image = self.describe_image(self.accounts[target.profile].ec2(region), ami) if ami else None
                if image is None or image.get("State") not in ("available", "pending"):
                    return False
        return True

    def preflight(self) -> dict[str, str]:
        """Account id of every profile, and every region's KMS key resolved: all before any upload."""
        src = self.aws.source_profile
        ids = {src: self.accounts[src].account_id(self.aws.source_region)}
        for target in self.aws.targets:
            account = self.accounts[target.profile]
            ids[target.profile] = account.account_id(next(iter(target.regions)))
            for region, key in target.regions.items():
                kms = account.kms(region)
                try:
                    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
                except kms.exceptions.NotFoundException:
                    raise AwsError(
                        f"profile {target.profile} region {region}: KMS key {key} does not exist "
                        "(create it or fix aws.targets[].regions in the spec); nothing was uploaded"
                    ) from None
                if meta.get("KeyState", "Enabled") != "Enabled":
                    raise AwsError(
                        f"profile {target.profile} region {region}: KMS key {key} is {meta.get('KeyState')}"
                    )
                self.manifest.copy(target.profile, region)["kms_key_arn"] = meta["Arn"]
                if target.share_with:
                    self.ensure_key_access(target, region, kms, dict(meta), key)
        self.manifest.data["accounts"] = ids
        self.manifest.save()
        return ids

    def ensure_key_access(
        self, target: Target, region: str, kms: KMSClient, meta: dict[str, Any], named: str
    ) -> None:
        """Every share_with account may use the region's key (key policy or grant), or gets a grant now
        (`kms_grants: create`); else an AwsError naming key, account and fix, before anything is uploaded."""
        arn = meta["Arn"]
        where = f"profile {target.profile} region {region}"
        # Alias names under aws/ are reserved for AWS managed keys (moto does not report their KeyManager).
        alias = named.rsplit(":alias/", maxsplit=1)[-1]
        if meta.get("KeyManager") == "AWS" or alias.startswith(("alias/aws/", "aws/")):
            raise AwsError(
                f"{where}: KMS key {arn} is AWS managed and cannot be used by other accounts: an AMI shared "
                f"with {', '.join(target.share_with)} could not be launched there; name a customer-managed "
                "key in aws.targets[].regions; nothing was uploaded"
            )
        try:
            policy = kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"]
        except ClientError as exc:
            if _error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
                raise
            policy = ""  # may not read the policy: only the grants can show that the account may use the key
        grants = [
            dict(g) for page in kms.get_paginator("list_grants").paginate(KeyId=arn) for g in page["Grants"]
        ]
        recorded = self.manifest.copy(target.profile, region).setdefault("kms_access", {})
        for account in target.share_with:
            if kms_access.policy_allows(policy, account, arn):
                recorded[account] = "key policy"
                continue
            grant = kms_access.grant_for(grants, account)
            if grant is not None:
                recorded[account] = f"grant {grant}"
                continue
            if target.kms_grants is KmsGrants.CHECK:
                raise AwsError(
                    f"{where}: KMS key {arn} does not let account {account} use it, so the AMI shared with "
                    "it could not be launched there; allow the account in the key policy or give it a grant "
                    f"({', '.join(kms_access.GRANT_OPERATIONS)}), or set kms_grants: create for "
                    f"{target.profile} in the spec; nothing was uploaded"
                )
            try:
                grant = kms.create_grant(
                    KeyId=arn,
                    GranteePrincipal=kms_access.account_principal(account),
                    Operations=list(kms_access.GRANT_OPERATIONS),  # type: ignore[arg-type]
                    Name=f"factory-share-{account}",
                )["GrantId"]
            except ClientError as exc:
                if _error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
                    raise
                raise AwsError(
                    f"{where}: not allowed to create a grant on KMS key {arn} for account {account} "
                    f"({_error_code(exc)}); allow kms:CreateGrant to profile {target.profile} in the key "
                    "policy, or add the account to the key policy yourself; nothing was uploaded"
                ) from None
            recorded[account] = f"grant {grant}"
            self.report("kms", f"{target.profile}/{region}: granted account {account} the use of {arn}")

    def ensure_source(self, raw: Path, image_sha256: str) -> tuple[str, list[str]]:
        """The unencrypted source AMI in the source account/region: found again, or uploaded now."""
        ec2 = self.source_ec2()
        src = self.manifest.source
        image = self.describe_image(ec2, src["ami_id"]) if src.get("ami_id") else None
        if image is None or image.get("State") == "deregistered":
            image = self.find_by_name(ec2, self.source_name)
        if image is not None:
            snaps = list(dict.fromkeys([*src.get("snapshot_ids", []), *self.image_snapshots(image)]))
            self.manifest.update_source(
                ami_id=image["ImageId"], ami_state=image.get("State"), snapshot_ids=snaps
            )
            self.report("source", f"found source AMI {image['ImageId']} from an earlier run")
            return image["ImageId"], snaps
        snapshot_id, size_gib = self.upload(raw, image_sha256)
        ami = ebs_direct.register_image(
            ec2,
            snapshot_id,
            name=self.source_name,
            ena=self.aws.ena,
            firmware=self.spec.vm.firmware,
            volume_size_gib=size_gib,
            description=f"{self.spec.name} build {self.build.build_id} (unencrypted source, temporary)",
        )
        image = self.describe_image(ec2, ami) or {}
        snaps = list(dict.fromkeys([snapshot_id, *self.image_snapshots(image)]))
        ec2.create_tags(Resources=[ami, *snaps], Tags=_tags(self.tags(image_sha256, self.source_name)))
        self.manifest.update_source(ami_id=ami, ami_state="available", snapshot_ids=snaps)
        self.report("source", f"registered source AMI {ami}")
        return ami, snaps

    def upload(self, raw: Path, image_sha256: str) -> tuple[str, int]:
        """Upload the raw disk to a completed snapshot; a pending one left by a killed run is replaced."""
        account = self.accounts[self.aws.source_profile]
        ec2 = self.source_ec2()
        src = self.manifest.source
        for old in src.get("snapshot_ids", []):
            snaps = ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [old]}])["Snapshots"]
            if snaps and snaps[0].get("State") == "completed" and src.get("snapshot_state") == "completed":
                return old, int(snaps[0].get("VolumeSize", 1))
            # Half-written: its blocks are unknown, so it is replaced rather than trusted.
            with contextlib.suppress(ClientError):
                ec2.delete_snapshot(SnapshotId=old)
        self.manifest.update_source(snapshot_ids=[], snapshot_state=None)
        tags = self.tags(image_sha256, f"{self.name}-source")
        total = raw.stat().st_size
        if self.aws.upload is UploadMethod.VM_IMPORT:
            assert self.aws.s3_bucket is not None  # the spec requires it for vm-import
            key = f"{self.spec.name}/{self.build.build_id}/disk.raw"
            imported = vm_import.import_raw(
                ec2,
                account.s3(self.aws.source_region),
                raw,
                bucket=self.aws.s3_bucket,
                key=key,
                client_token=self.token("import"),
                timeout=self.aws.copy_timeout,
                poll_interval=self.tuning.poll_interval,
                progress=lambda n: self.report("upload", "s3", n, total),
            )
            ec2.create_tags(Resources=[imported.snapshot_id], Tags=_tags(tags))
            self.manifest.update_source(snapshot_ids=[imported.snapshot_id], snapshot_state="completed")
            return imported.snapshot_id, -(-total // ebs_direct.GIB)

        def started(snapshot_id: str) -> None:
            self.manifest.update_source(snapshot_ids=[snapshot_id], snapshot_state="pending")

        result = ebs_direct.upload_snapshot(
            account.ebs(self.aws.source_region),
            raw,
            client_token=self.token("snapshot", str(time.time_ns())),
            tags=tags,
            workers=self.tuning.workers,
            block_attempts=self.tuning.block_attempts,
            backoff=self.tuning.backoff,
            progress=lambda n: self.report("upload", "ebs-direct", n, total),
            on_started=started,
        )
        self.manifest.update_source(snapshot_state="completed", bytes_sent=result.bytes_sent)
        self.report("upload", f"snapshot {result.snapshot_id}: {result.blocks_sent} blocks sent")
        return result.snapshot_id, result.volume_size_gib

    def share_source(self, ami: str, snapshots: list[str], ids: dict[str, str]) -> None:
        """Another account can copy the source only once it may launch it and read its snapshots."""
        source_account = ids[self.aws.source_profile]
        others = sorted({ids[t.profile] for t in self.aws.targets} - {source_account})
        if not others:
            return
        ec2 = self.source_ec2()
        users: list[Any] = [{"UserId": a} for a in others]
        ec2.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": users})
        for snap in snapshots:
            with contextlib.suppress(ClientError):  # moto's RegisterImage makes snapshots of its own
                ec2.modify_snapshot_attribute(
                    SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=others
                )
        self.manifest.update_source(shared_with=others)

    def ensure_copy(self, profile: str, region: str, source_ami: str, image_sha256: str) -> None:
        entry = self.manifest.copy(profile, region)
        ec2 = self.accounts[profile].ec2(region)
        image = self.describe_image(ec2, entry["ami_id"]) if entry.get("ami_id") else None
        if image is None or image.get("State") in ("deregistered", "failed", "invalid"):
            # A run killed right after CopyImage: the copy exists under its deterministic name.
            image = self.find_by_name(ec2, self.name)
        if image is not None:
            self.manifest.update_copy(profile, region, ami_id=image["ImageId"], state=image.get("State"))
            return
        tags = self.tags(image_sha256, self.name)
        ami = ec2.copy_image(
            SourceImageId=source_ami,
            SourceRegion=self.aws.source_region,
            Name=self.name,
            Description=f"{self.spec.name} build {self.build.build_id}",
            Encrypted=True,
            KmsKeyId=entry["kms_key_arn"],
            ClientToken=self.token(profile, region),
            TagSpecifications=[{"ResourceType": "image", "Tags": _tags(tags)}],
        )["ImageId"]
        self.manifest.update_copy(profile, region, ami_id=ami, state="pending")
        self.report("copy", f"{profile}/{region}: copying {source_ami} to {ami} (encrypted)")

    def wait_copies(self) -> None:
        """Poll every copy until available; `copy_timeout` without that is an AwsError, nothing deleted."""
        timeout = self.aws.copy_timeout
        deadline = time.monotonic() + timeout
        pending = [(t.profile, r) for t in self.aws.targets for r in t.regions]
        total = len(pending)
        while True:
            still = []
            for profile, region in pending:
                entry = self.manifest.copy(profile, region)
                image = self.describe_image(self.accounts[profile].ec2(region), entry["ami_id"])
                state = image.get("State", "missing") if image else "missing"
                if state != entry.get("state"):
                    self.manifest.update_copy(profile, region, state=state)
                if state == "available":
                    continue
                if state in ("failed", "invalid", "deregistered", "missing"):
                    reason = (image or {}).get("StateReason", {}).get("Message", "")
                    raise AwsError(
                        f"copy {entry['ami_id']} in profile {profile} region {region} is {state}"
                        f"{': ' + reason if reason else ''}; nothing was deleted"
                    )
                still.append((profile, region))
            pending = still
            self.report(
                "wait",
                f"{total - len(pending)} of {total} encrypted copies available",
                total - len(pending),
                total,
            )
            if not pending:
                return
            if time.monotonic() >= deadline:
                where = ", ".join(
                    f"{self.manifest.copy(p, r)['ami_id']} (profile {p} region {r})" for p, r in pending
                )
                raise AwsError(
                    f"copies not available within aws.copy_timeout {timeout} s: {where}; "
                    "nothing was deleted, re-run `factory promote` to go on waiting"
                )
            time.sleep(min(self.tuning.poll_interval, max(deadline - time.monotonic(), 0.05)))

    def finish_copy(self, profile: str, region: str, share_with: tuple[str, ...], image_sha256: str) -> None:
        """Tag the copy and its snapshots, share it, point the SSM parameter at it."""
        entry = self.manifest.copy(profile, region)
        account = self.accounts[profile]
        ec2 = account.ec2(region)
        ami = entry["ami_id"]
        image = self.describe_image(ec2, ami) or {}
        snaps = self.image_snapshots(image)
        # CopyImage's TagSpecifications tag the AMI on AWS; tagging again covers the snapshots (and moto).
        ec2.create_tags(Resources=[ami, *snaps], Tags=_tags(self.tags(image_sha256, self.name)))
        if share_with:
            ec2.modify_image_attribute(
                ImageId=ami, LaunchPermission={"Add": [{"UserId": a} for a in share_with]}
            )
        if self.aws.ssm_parameter is not None:
            account.ssm(region).put_parameter(
                Name=self.aws.ssm_parameter,
                Value=ami,
                Type="String",
                DataType="aws:ec2:image",
                Overwrite=True,
                Description=f"{self.spec.name}: latest promoted AMI (build {self.build.build_id})",
            )
        self.manifest.update_copy(
            profile,
            region,
            snapshot_ids=snaps,
            shared_with=list(share_with),
            ssm=self.aws.ssm_parameter,
            state="published",
        )
        self.report("publish", f"{profile}/{region}: {ami}")

    def retire_source(self) -> list[str]:
        src = self.manifest.source
        if src.get("ami_state") == "deregistered":
            return []
        ami = src["ami_id"]
        self.delete_image(self.source_ec2(), ami, list(src.get("snapshot_ids", [])))
        self.manifest.update_source(ami_state="deregistered", snapshot_state="deleted")
        self.manifest.add_retired(
            self.aws.source_profile,
            self.aws.source_region,
            ami,
            src.get("snapshot_ids", []),
            "unencrypted source",
        )
        return [ami]

    def retire_old(self) -> list[str]:
        """AMIs of this spec beyond `keep` (this build's copy counts as one), oldest first."""
        retired: list[str] = []
        mine = {a for regions in self.manifest.amis().values() for a in regions.values()}
        for target in self.aws.targets:
            account = self.accounts[target.profile]
            for region in target.regions:
                ec2 = account.ec2(region)
                images = ec2.describe_images(
                    Owners=["self"], Filters=[{"Name": "tag:factory:spec", "Values": [self.spec.name]}]
                )["Images"]
                others = sorted(
                    (i for i in images if i["ImageId"] not in mine and i.get("State") == "available"),
                    key=_age,
                    reverse=True,
                )
                in_use = self.ssm_targets(account, region)
                for image in others[max(self.aws.keep - 1, 0) :]:
                    if image["ImageId"] in in_use:
                        continue
                    snaps = self.delete_image(ec2, image["ImageId"], [])
                    self.manifest.add_retired(
                        target.profile, region, image["ImageId"], snaps, f"beyond keep={self.aws.keep}"
                    )
                    retired.append(image["ImageId"])
        return retired

    # -- cleanup -------------------------------------------------------------------------------------

    def places(self) -> list[tuple[str, str]]:
        found = [(self.aws.source_profile, self.aws.source_region)]
        found += [(t.profile, r) for t in self.aws.targets for r in t.regions]
        return list(dict.fromkeys(found))

    def cleanup(self) -> CleanupResult:
        removed: list[str] = []
        snaps_removed: list[str] = []
        kept: list[str] = []
        build_filter: list[Any] = [{"Name": "tag:factory:build-id", "Values": [self.build.build_id]}]
        for profile, region in self.places():
            account = self.accounts[profile]
            ec2 = account.ec2(region)
            in_use = self.ssm_targets(account, region)
            candidates: dict[str, list[str]] = {}
            for image in ec2.describe_images(Owners=["self"], Filters=build_filter)["Images"]:
                candidates[image["ImageId"]] = []
            for name in (self.name, self.source_name):
                found = self.find_by_name(ec2, name)
                if found is not None:
                    candidates.setdefault(found["ImageId"], [])
            if (profile, region) == (self.aws.source_profile, self.aws.source_region):
                src = self.manifest.source
                if src.get("ami_id"):
                    candidates.setdefault(src["ami_id"], [])
            entry = self.manifest.data["copies"].get(profile, {}).get(region, {})
            if entry.get("ami_id"):
                candidates.setdefault(entry["ami_id"], [])
            for ami in candidates:
                if ami in in_use:
                    kept.append(ami)
                    continue
                current = self.describe_image(ec2, ami)
                if current is None or current.get("State") == "deregistered":
                    continue
                snaps_removed += self.delete_image(ec2, ami, [])
                removed.append(ami)
            # Snapshots with no AMI (an upload that never got registered).
            for snap in ec2.describe_snapshots(OwnerIds=["self"], Filters=build_filter)["Snapshots"]:
                with contextlib.suppress(ClientError):
                    ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])
                    snaps_removed.append(snap["SnapshotId"])
        self.manifest.data["cleanup"] = {
            "removed_amis": removed,
            "removed_snapshots": snaps_removed,
            "kept_in_use": kept,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.manifest.set_state("cleaned")
        return CleanupResult(
            self.manifest.path, tuple(removed), tuple(dict.fromkeys(snaps_removed)), tuple(kept)
        )


def _age(image: Any) -> tuple[str, str]:
    """Sort key, newest last: CreationDate, then the build id tag.

    CreationDate can tie (moto stamps whole seconds; two quick promotions share one), and the
    build id starts with its UTC build time, so it orders a tie the way the builds happened.
    """
    tags = {t.get("Key"): t.get("Value", "") for t in image.get("Tags", [])}
    return str(image.get("CreationDate", "")), str(tags.get("factory:build-id", ""))
