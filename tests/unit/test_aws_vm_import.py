"""Polling and classification of VM import tasks. moto cannot run import tasks (it answers HTTP 500 "not
implemented"), so these responses are stubbed with botocore.stub.Stubber; tests/aws covers the real 500."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from factory.errors import AwsError
from factory.targets.aws.vm_import import classify, wait_import


def task(status: str, message: str = "", snapshot: str | None = None, progress: str = "10") -> dict[str, Any]:
    detail: dict[str, Any] = {"Status": status, "Progress": progress}
    if message:
        detail["StatusMessage"] = message
    if snapshot:
        detail["SnapshotId"] = snapshot
    return {"ImportTaskId": "import-snap-1", "SnapshotTaskDetail": detail}


@pytest.mark.parametrize(
    ("status", "snapshot", "expected"),
    [
        ("active", None, "running"),
        ("completed", "snap-1", "completed"),
        ("completed", None, "running"),  # completed without a snapshot id yet: keep polling
        ("deleting", None, "failed"),
        ("deleted", None, "failed"),
        ("error", None, "failed"),
    ],
    ids=["active", "completed", "completed-no-snapshot", "deleting", "deleted", "error"],
)
def test_classify(status: str, snapshot: str | None, expected: str) -> None:
    assert classify(task(status, snapshot=snapshot)) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def stubbed(responses: list[dict[str, Any]]) -> tuple[Any, Stubber]:
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(ec2)
    for r in responses:
        stub.add_response(
            "describe_import_snapshot_tasks",
            {"ImportSnapshotTasks": [r]},
            {"ImportTaskIds": ["import-snap-1"]},
        )
    stub.activate()
    return ec2, stub


def test_wait_returns_snapshot_when_completed() -> None:
    ec2, stub = stubbed([task("active"), task("active", progress="50"), task("completed", snapshot="snap-9")])
    clock = FakeClock()
    done = wait_import(ec2, "import-snap-1", timeout=600, poll_interval=15, clock=clock, sleep=clock.sleep)
    assert done.snapshot_id == "snap-9"
    assert clock.now == 30
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "message",
    [
        "ClientError: Unsupported kernel version 3.8.13-118.el7uek.x86_64",
        "ClientError: Unable to determine kernel version",
    ],
    ids=["unsupported-kernel", "unknown-kernel"],
)
def test_kernel_rejection_is_surfaced_at_once(message: str) -> None:
    ec2, _stub = stubbed([task("active"), task("deleting", message)])
    clock = FakeClock()
    with pytest.raises(AwsError, match="kernel version") as info:
        wait_import(ec2, "import-snap-1", timeout=3600, poll_interval=15, clock=clock, sleep=clock.sleep)
    assert message in info.value.message
    assert clock.now == 15  # no waiting beyond the poll that saw the failure


def test_never_finishing_task_times_out() -> None:
    ec2, _stub = stubbed([task("active", "converting")] * 5)
    clock = FakeClock()
    with pytest.raises(AwsError, match=r"did not finish within 60 s \(last: converting\)"):
        wait_import(ec2, "import-snap-1", timeout=60, poll_interval=15, clock=clock, sleep=clock.sleep)
