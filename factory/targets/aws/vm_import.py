"""The `vm-import` upload: S3 multipart upload, then ImportSnapshot, polled to its end with a bound.

AWS's VM Import checks the guest's kernel and fails tasks with messages like "Unsupported kernel version";
those are surfaced at once as an AwsError, never waited out. boto3 has no waiter for import tasks: polled.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from factory.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client

TaskState = Literal["running", "completed", "failed"]


@dataclasses.dataclass(frozen=True)
class ImportedSnapshot:
    task_id: str
    snapshot_id: str


def upload_to_s3(
    s3: S3Client, path: Path, bucket: str, key: str, *, progress: Callable[[int], None] | None = None
) -> None:
    """Multipart upload with boto3's managed transfer (parallel parts, per-part retries)."""
    config = TransferConfig(
        multipart_threshold=64 * 1024**2, multipart_chunksize=64 * 1024**2, max_concurrency=8
    )
    try:
        s3.upload_file(str(path), bucket, key, Config=config, Callback=progress)
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"upload of {path.name} to s3://{bucket}/{key} failed: {exc}") from None
    except Exception as exc:  # s3transfer wraps failures in its own S3UploadFailedError
        raise AwsError(f"upload of {path.name} to s3://{bucket}/{key} failed: {exc}") from None


def classify(task: dict[str, Any]) -> TaskState:
    """One import-snapshot task's state: still running, completed, or failed (deleted/deleting/error)."""
    detail = task.get("SnapshotTaskDetail", {})
    status = str(detail.get("Status", "")).lower()
    if status == "completed" and detail.get("SnapshotId"):
        return "completed"
    if status in {"deleted", "deleting", "error", "failed", "cancelled"}:
        return "failed"
    return "running"


def start_import(
    ec2: EC2Client, bucket: str, key: str, disk_format: str, *, client_token: str, description: str
) -> str:
    try:
        return ec2.import_snapshot(
            ClientToken=client_token,
            Description=description,
            DiskContainer={"Format": disk_format.upper(), "UserBucket": {"S3Bucket": bucket, "S3Key": key}},
        )["ImportTaskId"]
    # moto answers ImportSnapshot with an HTML 500 page that botocore cannot even parse.
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise AwsError(f"ImportSnapshot of s3://{bucket}/{key} failed: {exc}") from None


def wait_import(
    ec2: EC2Client,
    task_id: str,
    *,
    timeout: float,
    poll_interval: float = 15,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportedSnapshot:
    """Poll the task until it completes; a failed task or `timeout` seconds without an end is an AwsError."""
    deadline = clock() + timeout
    while True:
        try:
            tasks = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"]
        except (ClientError, BotoCoreError) as exc:
            raise AwsError(f"import task {task_id}: cannot read its status: {exc}") from None
        if not tasks:
            raise AwsError(f"import task {task_id} does not exist (any more)")
        task: dict[str, Any] = dict(tasks[0])
        detail = task.get("SnapshotTaskDetail", {})
        state = classify(task)
        if state == "completed":
            return ImportedSnapshot(task_id, detail["SnapshotId"])
        message = detail.get("StatusMessage") or detail.get("Status") or "no status"
        if state == "failed":
            raise AwsError(f"VM import task {task_id} failed: {message}")
        if progress is not None:
            progress(f"{detail.get('Progress', '?')}% {message}")
        if clock() >= deadline:
            raise AwsError(
                f"VM import task {task_id} did not finish within {timeout:.0f} s (last: {message})"
            )
        sleep(min(poll_interval, max(deadline - clock(), 0.1)))


def import_raw(
    ec2: EC2Client,
    s3: S3Client,
    raw: Path,
    *,
    bucket: str,
    key: str,
    client_token: str,
    timeout: float,
    poll_interval: float = 15,
    progress: Callable[[int], None] | None = None,
) -> ImportedSnapshot:
    """Upload a raw disk to S3 and import it as a snapshot; returns the task and snapshot ids."""
    upload_to_s3(s3, raw, bucket, key, progress=progress)
    task_id = start_import(ec2, bucket, key, "raw", client_token=client_token, description=f"factory {key}")
    return wait_import(ec2, task_id, timeout=timeout, poll_interval=poll_interval)
