"""ImportVApp and the HttpNfcLease: upload the OVA's disk to the device URL, report progress (which is
also the keep-alive: a lease without progress for 5 minutes times out), complete or abort.

The lease's device URL reads https://*/nfc/...: `*` is the host the client connected to (govc does the
same); a plain-HTTP endpoint (the simulator) gets http.
"""

from __future__ import annotations

import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from pyVmomi import vim

from factory.errors import VsphereError
from factory.targets.vsphere.connection import Endpoint

KEEPALIVE_S = 10.0  # well inside the lease's 300 s idle timeout


@dataclass(frozen=True)
class Ova:
    """The members of an OVA that an import needs."""

    path: Path
    descriptor: str
    # file name in the OVA -> (offset of its data in the tar, size)
    files: dict[str, tuple[int, int]]


def read_ova(path: Path) -> Ova:
    try:
        with tarfile.open(path) as tar:
            names = tar.getmembers()
            ovf = next((m for m in names if m.name.endswith(".ovf")), None)
            if ovf is None:
                raise VsphereError(f"{path}: no .ovf descriptor in the OVA")
            fh = tar.extractfile(ovf)
            assert fh is not None
            descriptor = fh.read().decode()
            files = {m.name: (m.offset_data, m.size) for m in names if m.isfile()}
    except (OSError, tarfile.TarError) as exc:
        raise VsphereError(f"{path}: not a readable OVA ({exc})") from None
    return Ova(path, descriptor, files)


class _Reader:
    """A file slice (one tar member) as a file with a length, counting what was read: requests sends it
    with a Content-Length (the NFC endpoint does not take a chunked body)."""

    def __init__(self, fh: IO[bytes], offset: int, size: int, sent: Callable[[int], None]) -> None:
        fh.seek(offset)
        self.fh, self.left, self.sent = fh, size, sent

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        if n == 0:
            return b""
        data = self.fh.read(n)
        if not data:
            raise VsphereError("the OVA ended before its disk did")
        self.left -= len(data)
        self.sent(len(data))
        return data


def wait_ready(lease: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while lease.state == vim.HttpNfcLease.State.initializing:
        if time.monotonic() > deadline:
            raise VsphereError(f"vSphere: the import lease was not ready within {timeout:.0f} s")
        time.sleep(0.2)
    if lease.state == vim.HttpNfcLease.State.error:
        raise VsphereError(f"vSphere refused the import: {lease.error.localizedMessage or lease.error.msg}")
    if lease.state != vim.HttpNfcLease.State.ready:
        raise VsphereError(f"vSphere: the import lease is {lease.state}, not ready")


def upload(
    lease: Any,
    ova: Ova,
    file_items: list[Any],
    ep: Endpoint,
    *,
    verify_tls: bool,
    timeout: float,
    progress: Callable[[int, int], None],
) -> int:
    """POST every disk the import spec lists to its device URL; returns the bytes sent."""
    total = sum(ova.files[item.path][1] for item in file_items)
    sent = 0
    lock = threading.Lock()
    stop = threading.Event()

    step = max(total // 100, 1)  # report every 1 %, not every socket write
    reported = 0

    def count(n: int) -> None:
        nonlocal sent, reported
        with lock:
            sent += n
            if sent - reported < step and sent < total:
                return
            reported = sent
        progress(sent, total)

    def keep_alive() -> None:
        while not stop.wait(KEEPALIVE_S):
            try:
                lease.HttpNfcLeaseProgress(percent=min(99, int(100 * sent / max(total, 1))))
            except Exception:  # the main thread reports the lease's own error
                return

    urls = {d.importKey: d.url for d in lease.info.deviceUrl}
    ticker = threading.Thread(target=keep_alive, name="nfc-keepalive", daemon=True)
    ticker.start()
    try:
        with ova.path.open("rb") as fh, requests.Session() as http:
            for item in file_items:
                if item.path not in ova.files:
                    raise VsphereError(f"{ova.path}: the OVF names {item.path}, which the OVA does not hold")
                url = urls.get(item.deviceId)
                if url is None:
                    raise VsphereError(f"vSphere: the import lease has no upload URL for {item.deviceId}")
                scheme = "http" if ep.scheme == "http" else "https"
                url = url.replace("https://*", f"{scheme}://{ep.netloc}").replace("*", ep.netloc)
                offset, size = ova.files[item.path]
                resp = http.post(
                    url,
                    data=_Reader(fh, offset, size, count),
                    headers={"Content-Type": "application/x-vnd.vmware-streamVmdk"},
                    verify=verify_tls,
                    timeout=timeout,
                )
                if resp.status_code >= 300:
                    raise VsphereError(
                        f"vSphere: upload of {item.path} answered HTTP {resp.status_code}: {resp.text[:200]}"
                    )
    except requests.RequestException as exc:
        raise VsphereError(f"vSphere: upload of {ova.path.name} failed: {exc}") from None
    finally:
        stop.set()
        ticker.join(timeout=5)
    return sent
