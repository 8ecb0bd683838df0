"""Which blocks of a raw disk get sent, and the LINEAR aggregate checksum."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from factory.targets.aws.ebs_direct import BLOCK_SIZE, data_blocks, linear_checksum


@pytest.mark.parametrize(
    ("writes", "size", "expected"),
    [
        ([], 4 * BLOCK_SIZE, []),
        ([(0, 1)], 4 * BLOCK_SIZE, [0]),
        ([(BLOCK_SIZE - 1, 2)], 4 * BLOCK_SIZE, [0, 1]),  # one write straddling two blocks
        ([(3 * BLOCK_SIZE, BLOCK_SIZE)], 4 * BLOCK_SIZE, [3]),
        ([(0, 10), (2 * BLOCK_SIZE + 5, 10)], 4 * BLOCK_SIZE, [0, 2]),
        ([(4 * BLOCK_SIZE, 100)], 4 * BLOCK_SIZE + 100, [4]),  # size not a multiple of the block size
    ],
    ids=["all-hole", "first-byte", "straddle", "last-block", "two-extents", "partial-tail"],
)
def test_data_blocks_skips_holes(
    tmp_path: Path, writes: list[tuple[int, int]], size: int, expected: list[int]
) -> None:
    path = tmp_path / "disk.raw"
    with path.open("wb") as fh:
        fh.truncate(size)
        for offset, length in writes:
            fh.seek(offset)
            fh.write(b"\1" * length)
    fd = os.open(path, os.O_RDONLY)
    try:
        # Filesystems allocate in 4 KiB pages: a block the page of a write touches may be reported too,
        # never one without data.
        assert set(expected) <= set(data_blocks(fd, size)) <= set(expected) | {i + 1 for i in expected}
        assert list(data_blocks(fd, size)) == sorted(set(data_blocks(fd, size)))
    finally:
        os.close(fd)


def test_linear_checksum_is_sha256_of_raw_digests_in_order() -> None:
    digests = [hashlib.sha256(bytes([i]) * BLOCK_SIZE).digest() for i in (1, 2, 3)]
    expected = base64.b64encode(hashlib.sha256(digests[0] + digests[1] + digests[2]).digest()).decode()
    assert linear_checksum(digests) == expected
    assert linear_checksum(digests[::-1]) != expected
    assert len(base64.b64decode(linear_checksum([]))) == 32
