"""Benchmark: ebs-direct upload of a sparse raw image vs a plain S3 upload_file, on a local moto endpoint.

    python bench/upload.py [--size-gib 4] [--data-mib 256] [--chunk-mib 4] [--workers 8]

Prints bytes sent / data bytes for ebs-direct (goal <= 1.02; request bodies summed by a before-send hook)
and the wall time of both. moto is a stand-in: the times say what the client side costs, not AWS's speed.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.targets.aws.ebs_direct import BLOCK_SIZE, upload_snapshot
from factory.targets.aws.local import write_profiles
from factory.targets.aws.session import AwsSettings, open_account

MIB = 1024**2


def make_image(path: Path, size: int, data: int, chunk: int, seed: int = 7) -> None:
    """A sparse image with `data` bytes of random data in block-aligned chunks at random places."""
    rng = random.Random(seed)
    slots = rng.sample(range(size // chunk), data // chunk)
    with path.open("wb") as fh:
        fh.truncate(size)
        for slot in slots:
            fh.seek(slot * chunk)
            fh.write(os.urandom(chunk))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--data-mib", type=int, default=256)
    ap.add_argument("--chunk-mib", type=int, default=4)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--skip-s3", action="store_true")
    a = ap.parse_args()
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO (thousands of lines for one upload).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    sent = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def count(request: Any, **_: Any) -> None:
        body = request.body
        n = len(body) if isinstance(body, bytes | str) else int(request.headers.get("Content-Length", 0) or 0)
        with lock:
            sent["bytes"] += n
            sent["requests"] += 1

    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
            folder = Path(tmp)
            config, creds = write_profiles(folder, ["bench"], url, "us-east-1")
            settings = AwsSettings(
                endpoint_url=url,
                config_file=config,
                credentials_file=creds,
                session_hook=lambda core: core.register("before-send.ebs", count),
            )
            account = open_account("bench", settings)
            raw = folder / "disk.raw"
            size, data = a.size_gib * 1024 * MIB, a.data_mib * MIB
            make_image(raw, size, data, a.chunk_mib * MIB)
            started = time.monotonic()
            up = upload_snapshot(
                account.ebs("us-east-1"), raw, client_token="bench", tags={}, workers=a.workers
            )
            ebs_s = time.monotonic() - started
            print(f"image: {a.size_gib} GiB apparent, {a.data_mib} MiB data in {a.chunk_mib} MiB chunks")
            print(
                f"ebs-direct: {ebs_s:.1f} s, {up.blocks_sent} blocks of {BLOCK_SIZE} B sent, "
                f"{up.blocks_skipped} skipped, {sent['requests']} requests"
            )
            print(f"ebs-direct bytes sent / data bytes: {sent['bytes'] / data:.4f} (goal <= 1.02)")
            if not a.skip_s3:
                s3 = account.s3("us-east-1")
                s3.create_bucket(Bucket="bench")
                started = time.monotonic()
                s3.upload_file(str(raw), "bench", "disk.raw")
                s3_s = time.monotonic() - started
                print(f"s3 upload_file of the whole raw file: {s3_s:.1f} s ({size / MIB:.0f} MiB sent)")
                print(f"ebs-direct wall time / s3 wall time: {ebs_s / s3_s:.3f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
