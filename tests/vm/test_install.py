"""The install engine on real QEMU (TCG) with the testbed: a success per boot mode, every failure the
testbed can inject classified, no QEMU left behind, and the boot line typed exactly under full CPU load."""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from factory.core.record import BuildDir
from factory.errors import InstallError
from factory.spec import Spec
from factory.stages.install import install
from factory.stages.media import media
from factory.stages.media.media import MediaResult

pytestmark = pytest.mark.vm


def qemu_children() -> list[int]:
    """PIDs of qemu processes whose parent is this test process."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"qemu-system" in cmd:
            found.append(int(entry.name))
    return found


def _busy(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        pass


@pytest.fixture
def cpu_load() -> Iterator[None]:
    """Every host core busy (one spinning process per core) for the duration of the test."""
    stop = multiprocessing.Event()
    procs = [multiprocessing.Process(target=_busy, args=(stop,)) for _ in range(multiprocessing.cpu_count())]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(5)


@pytest.mark.parametrize("mode", ["kernel", "serial-prompt"])
def test_install_succeeds(
    mode: str, testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    spec = testbed_spec(mode)
    result = install.install(spec, media.for_boot(spec, testbed_media), build_dir)
    assert result.disk == build_dir.path / "disk.qcow2"
    assert result.disk.is_file()
    assert not list(build_dir.path.glob(".disk.qcow2.part"))
    assert result.accel == "tcg"
    assert result.packages > 0
    assert 0 < result.guest_seconds <= result.total_seconds
    assert "Installation complete" in (build_dir.path / "console.log").read_text(errors="replace")
    assert (build_dir.path / "anaconda.log").stat().st_size > 0
    requests = (build_dir.path / "ks-requests.log").read_text()
    assert " 200 " in requests and "rootpw" not in requests
    assert qemu_children() == []


FAILURES = [
    pytest.param((("testbed.fail=crash",), {}, "traceback"), id="crash"),
    pytest.param((("testbed.fail=panic",), {}, "kernel-panic"), id="panic"),
    pytest.param((("testbed.fail=post",), {}, "post-failed"), id="failing-post"),
    pytest.param((("testbed.fail=hang",), {"idle": 8}, "idle-timeout"), id="silent-hang"),
    # The hub redraws every 3 s, under an 8 s idle limit: only the monitor's needs-input can end it.
    pytest.param((("testbed.fail=hub",), {"idle": 8}, "needs-input"), id="text-hub-waiting"),
]


@pytest.mark.parametrize("case", FAILURES)
def test_injected_failure_is_classified(
    case: tuple[tuple[str, ...], dict[str, int], str],
    testbed_spec: Callable[..., Spec],
    testbed_media: MediaResult,
    build_dir: BuildDir,
) -> None:
    args, timeouts, kind = case
    started = time.monotonic()
    with pytest.raises(InstallError) as err:
        install.install(testbed_spec("kernel", args, **timeouts), testbed_media, build_dir)
    elapsed = time.monotonic() - started
    print(f"{kind}: classified after {elapsed:.1f} s")  # a figure, not an assertion (see bench/failfast.py)
    assert err.value.kind == kind
    assert err.value.details  # the last relevant lines are quoted
    assert not (build_dir.path / "disk.qcow2").exists()
    assert not list(build_dir.path.glob(".disk.qcow2*"))
    assert qemu_children() == []


def test_kickstart_never_fetched(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir
) -> None:
    spec = testbed_spec("kernel", kickstart_fetch=60)
    with pytest.raises(InstallError) as err:
        # The right server, a wrong token: the guest gets 404s and never the kickstart.
        install.install(spec, testbed_media, build_dir, ks_path_for_guest="/wrongtoken/ks.cfg")
    assert err.value.kind == "kickstart-not-fetched"
    assert "/wrongtoken/ks.cfg (404)" in err.value.message
    # dracut's own warning ends it at once (the 20 s deadline is not what fired), quoting the URL.
    assert "dracut could not fetch the kickstart: http://10.0.2.2:" in err.value.message
    assert not (build_dir.path / "disk.qcow2").exists()
    assert qemu_children() == []


def test_typing_under_full_cpu_load(
    testbed_spec: Callable[..., Spec], testbed_media: MediaResult, build_dir: BuildDir, cpu_load: None
) -> None:
    # testbed.fail=crash stops the install early: this test is about the typed line, not the install.
    spec = testbed_spec("serial-prompt", ("testbed.fail=crash",))
    with pytest.raises(InstallError) as err:
        install.install(spec, media.for_boot(spec, testbed_media), build_dir)
    assert err.value.kind == "traceback"  # testbed.fail=crash, typed last, reached the installer
    # Checked through lossless channels: under this load the guest-to-host serial output drops bytes
    # (QEMU gives up on a full console socket), so the kernel's printed command line is no witness.
    # The installer logs (virtio-serial) the inst.ks URL it read from /proc/cmdline.
    log = (build_dir.path / "anaconda.log").read_text(errors="replace")
    fetched = re.search(r"kickstart fetched from (http://10\.0\.2\.2:\d+)(/\S+) ", log)
    assert fetched, log[-800:]
    requests = (build_dir.path / "ks-requests.log").read_text()
    # The exact unguessable path the server handed out was typed, read by the guest and fetched.
    assert f" GET {fetched.group(2)} 200 " in requests, requests
    assert fetched.group(2).endswith("/ks.cfg")
    # Every typed character arrived: the whole boot line, as the kernel received it (logged losslessly).
    cmdline = re.search(r"kernel command line: ([^\r\n]*)", log)
    assert cmdline, log[-800:]
    typed = install.boot_args(spec, testbed_media.volume_label, fetched.group(1) + fetched.group(2))
    assert cmdline.group(1).rstrip().endswith(typed), (cmdline.group(1), typed)
    assert qemu_children() == []
