"""Upload a raw disk straight into an EBS snapshot (EBS direct APIs), then register it as an AMI.

No S3 bucket, no vmimport role, no AWS-side kernel check. Only blocks holding data are sent: sparse holes
are skipped without reading them (SEEK_DATA/SEEK_HOLE) and all-zero blocks after reading.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from factory.errors import AwsError
from factory.spec import Firmware

if TYPE_CHECKING:
    from mypy_boto3_ebs import EBSClient
    from mypy_boto3_ec2 import EC2Client

log = logging.getLogger("factory.targets.aws.ebs_direct")

# EBS direct APIs write 512 KiB blocks. Hard-coded: moto's StartSnapshot answers BlockSize 512.
BLOCK_SIZE = 524288
GIB = 1024**3
_ZERO = bytes(BLOCK_SIZE)
# Error codes worth another try of the same block (besides any 5xx and connection errors).
_RETRYABLE = {
    "ThrottlingException",
    "RequestThrottledException",
    "InternalServerException",
    "ServiceUnavailable",
}

Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class SnapshotUpload:
    snapshot_id: str
    volume_size_gib: int
    blocks_sent: int
    blocks_skipped: int  # all-zero or hole blocks: never sent
    bytes_sent: int
    checksum: str  # the LINEAR aggregate checksum given to CompleteSnapshot


def data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges that may hold data; holes are skipped without reading them."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        pos = end


def data_blocks(fd: int, size: int) -> Iterator[int]:
    """Indexes of the 512 KiB blocks that touch a data range, ascending, each once."""
    last = -1
    for start, end in data_ranges(fd, size):
        for index in range(max(start // BLOCK_SIZE, last + 1), (end - 1) // BLOCK_SIZE + 1):
            last = index
            yield index


def linear_checksum(digests: list[bytes]) -> str:
    """Aggregate checksum (LINEAR): sha256 over the raw block digests in block-index order, base64."""
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _RETRYABLE or status >= 500
    return False


def _put_block(
    ebs: EBSClient, *, snapshot_id: str, index: int, data: bytes, digest: bytes, attempts: int, backoff: float
) -> None:
    """Write one block; retry throttling/5xx a bounded number of times (moto answers 500 forever for an
    unknown snapshot, so "retry until it works" would never end)."""
    checksum = base64.b64encode(digest).decode()
    for attempt in range(1, attempts + 1):
        try:
            ebs.put_snapshot_block(
                SnapshotId=snapshot_id,
                BlockIndex=index,
                BlockData=data,
                DataLength=len(data),
                Checksum=checksum,
                ChecksumAlgorithm="SHA256",
            )
            return
        except (ClientError, BotoCoreError) as exc:
            if attempt == attempts or not _retryable(exc):
                raise AwsError(
                    f"snapshot {snapshot_id}: writing block {index} failed after {attempt} attempt(s): {exc}"
                ) from None
            delay = min(backoff * 2 ** (attempt - 1), 20) * random.uniform(0.5, 1)
            log.info("block %d of %s: %s; retrying in %.1f s", index, snapshot_id, exc, delay)
            time.sleep(delay)


def _start(
    ebs: EBSClient,
    raw: Path,
    *,
    size: int,
    client_token: str,
    tags: Mapping[str, str],
    kms_key_arn: str | None,
    timeout_minutes: int,
) -> str:
    """StartSnapshot for a volume of `size` bytes (rounded up to GiB); returns the pending snapshot id."""
    if size == 0:
        raise AwsError(f"{raw}: the raw image is empty")
    start_args: dict[str, object] = {
        "VolumeSize": -(-size // GIB),
        "ClientToken": client_token,
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        # Minutes AWS keeps a pending snapshot open between writes before it fails it.
        "Timeout": timeout_minutes,
    }
    if kms_key_arn is not None:
        start_args |= {"Encrypted": True, "KmsKeyArn": kms_key_arn}
    try:
        return ebs.start_snapshot(**start_args)["SnapshotId"]  # type: ignore[arg-type]
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"StartSnapshot for {raw.name} failed: {exc}") from None


def upload_snapshot(
    ebs: EBSClient,
    raw: Path,
    *,
    client_token: str,
    tags: Mapping[str, str],
    kms_key_arn: str | None = None,
    workers: int = 8,
    block_attempts: int = 4,
    backoff: float = 0.5,
    timeout_minutes: int = 60,
    progress: Progress | None = None,
    on_started: Callable[[str], None] | None = None,
) -> SnapshotUpload:
    """Write `raw` into a new snapshot and complete it. `on_started(snapshot_id)` runs right after
    StartSnapshot so a caller can record the pending snapshot before any block is sent."""
    size = raw.stat().st_size
    volume_gib = -(-size // GIB)
    snapshot_id = _start(
        ebs,
        raw,
        size=size,
        client_token=client_token,
        tags=tags,
        kms_key_arn=kms_key_arn,
        timeout_minutes=timeout_minutes,
    )
    if on_started is not None:
        on_started(snapshot_id)

    digests: dict[int, bytes] = {}
    lock = threading.Lock()
    counters = {"skipped": 0, "sent_bytes": 0}
    # Bounds the blocks in flight (read but not yet written): memory stays ~ 2 x workers x 512 KiB.
    slots = threading.BoundedSemaphore(workers * 2)
    errors: list[Exception] = []
    fd = os.open(raw, os.O_RDONLY)

    def one(index: int) -> None:
        try:
            data = os.pread(fd, BLOCK_SIZE, index * BLOCK_SIZE)
            if data.count(0) == len(data):
                with lock:
                    counters["skipped"] += 1
                return
            # The last block of a disk whose size is no multiple of 512 KiB: pad (EBS blocks are whole).
            data = data.ljust(BLOCK_SIZE, b"\0")
            digest = hashlib.sha256(data).digest()
            _put_block(
                ebs,
                snapshot_id=snapshot_id,
                index=index,
                data=data,
                digest=digest,
                attempts=block_attempts,
                backoff=backoff,
            )
            with lock:
                digests[index] = digest
                counters["sent_bytes"] += len(data)
                sent = counters["sent_bytes"]
            if progress is not None:
                progress(sent)
        except Exception as exc:  # reported by the feeding loop; a worker thread cannot raise to it
            errors.append(exc)
        finally:
            slots.release()

    total_blocks = -(-size // BLOCK_SIZE)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ebs-put") as pool:
            for index in data_blocks(fd, size):
                # Stop feeding blocks as soon as one has failed for good.
                if errors:
                    break
                slots.acquire()
                pool.submit(one, index)
    finally:
        os.close(fd)
    if errors:
        raise errors[0]

    order = sorted(digests)
    checksum = linear_checksum([digests[i] for i in order])
    try:
        ebs.complete_snapshot(
            SnapshotId=snapshot_id,
            ChangedBlocksCount=len(order),
            Checksum=checksum,
            ChecksumAlgorithm="SHA256",
            ChecksumAggregationMethod="LINEAR",
        )
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"snapshot {snapshot_id}: CompleteSnapshot failed: {exc}") from None
    return SnapshotUpload(
        snapshot_id=snapshot_id,
        volume_size_gib=volume_gib,
        blocks_sent=len(order),
        blocks_skipped=total_blocks - len(order),
        bytes_sent=counters["sent_bytes"],
        checksum=checksum,
    )


def register_image(
    ec2: EC2Client,
    snapshot_id: str,
    *,
    name: str,
    ena: bool,
    firmware: Firmware,
    volume_size_gib: int,
    description: str = "",
) -> str:
    """Register an HVM x86_64 AMI whose root volume is the snapshot; returns the AMI id."""
    try:
        return ec2.register_image(
            Name=name,
            Description=description,
            # The API's default is i386.
            Architecture="x86_64",
            VirtualizationType="hvm",
            EnaSupport=ena,
            BootMode="uefi" if firmware is Firmware.UEFI else "legacy-bios",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {
                        "SnapshotId": snapshot_id,
                        "DeleteOnTermination": True,
                        "VolumeType": "gp3",
                        "VolumeSize": volume_size_gib,
                    },
                }
            ],
        )["ImageId"]
    except (ClientError, BotoCoreError) as exc:
        raise AwsError(f"RegisterImage {name} from {snapshot_id} failed: {exc}") from None
