"""--keep-on-error: a failed install's VM stays paused, and `factory console BUILD` attaches to it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from factory.core.record import BuildDir
from factory.errors import InstallError
from factory.spec import Spec
from factory.stages.install import install
from factory.stages.media.media import MediaResult

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_kept_vm_is_paused_and_console_attaches(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    spec = testbed_spec("kernel", ("testbed.fail=crash",))
    with pytest.raises(InstallError) as err:
        install.install(spec, testbed_media, build_dir, keep_on_error=True)
    assert err.value.kind == "traceback"
    details = err.value.details
    assert f"factory console {build_dir.path}" in details
    pid = int(details.split("qemu pid ")[1].split(")")[0])
    link = build_dir.path / "console.sock"
    try:
        assert _alive(pid), "the VM must be kept for inspection"
        assert link.is_symlink()
        assert link.exists(), "the console socket must still be served"
        assert not (build_dir.path / "disk.qcow2").exists(), "a failed install never leaves a disk to reuse"
        # Attach, type a key, detach with Ctrl-]: the console command exits 0 and says so.
        proc = subprocess.Popen(
            [sys.executable, "-m", "factory", "console", str(build_dir.path), "--timeout", "20"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        time.sleep(1.0)
        proc.stdin.write(b"\r\x1d")
        proc.stdin.flush()
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert b"attached to" in stderr
        assert b"detached" in stderr
        assert _alive(pid), "detaching the console must not stop the kept VM"
    finally:
        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(link.resolve().parent, ignore_errors=True)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_without_keep_nothing_is_left(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    spec = testbed_spec("kernel", ("testbed.fail=crash",))
    with pytest.raises(InstallError):
        install.install(spec, testbed_media, build_dir)
    link = build_dir.path / "console.sock"
    assert not link.is_symlink() and not link.exists()
    assert not (build_dir.path / "disk.qcow2").exists()
