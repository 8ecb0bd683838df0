"""seal against a real testbed install: cleanup over SSH, offline re-check, and the sealed image boots."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest
from fixtures_verify import Installed, fresh_copy, key_of, session_testbed

from factory.core import digest
from factory.core.record import BuildDir
from factory.stages.promote.gate import require_verified
from factory.stages.seal.seal import recheck, seal
from factory.stages.verify import verify as boot
from factory.vm import qemu
from factory.vm.sshkey import KEY_COMMENT

pytestmark = pytest.mark.vm


@pytest.fixture
def fresh_build(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Installed:
    return fresh_copy(session_testbed(tmp_path_factory), tmp_path)


def _ssh_banner(port: int, timeout: float) -> str:
    """The SSH server's first line on 127.0.0.1:port (sshd answers before any key is offered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                banner = s.recv(256).decode(errors="replace")
                if banner.startswith("SSH-"):
                    return banner.strip()
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"no SSH banner on 127.0.0.1:{port} within {timeout:.0f} s")


def test_seal_removes_build_key_and_host_keys(fresh_build: Installed) -> None:
    source = digest.sha256_file(fresh_build.disk)
    result = seal(fresh_build.spec, fresh_build.disk, fresh_build.build, key=key_of(fresh_build.build))
    assert result.sealed_image == fresh_build.build.path / "sealed.qcow2"
    assert result.sealed_image.is_file()
    assert not (fresh_build.build.path / "sealed.qcow2.tmp").exists()
    assert result.source_sha256 == source == digest.sha256_file(fresh_build.disk)
    assert result.sealed_sha256 == digest.sha256_file(result.sealed_image)
    assert result.recheck_passed
    assert "/root/.ssh/authorized_keys: build key line" in result.removed
    assert any(r.startswith("/etc/ssh/ssh_host_") for r in result.removed)
    assert "/root/anaconda-ks.cfg" in result.removed
    # The private key is gone from the build directory; the image itself never had it.
    assert not (fresh_build.build.path / "build-key").exists()
    # No verify boot was generalised here: seal booted a copy and cleaned it itself.
    assert result.generalised_in == "seal-boot"
    # An independent second look at the sealed image, offline (ext4: debugfs, no appliance).
    again, reader = recheck(result.sealed_image, "tcg")
    assert again.passed, again.problems()
    assert (reader, result.reader) == ("debugfs", "debugfs")
    assert KEY_COMMENT not in result.sealed_image.name


def test_sealed_image_still_boots_to_ssh_and_passes_the_gate(fresh_build: Installed) -> None:
    key = key_of(fresh_build.build)
    with fresh_build.build.stage_run("verify") as holder:
        holder["result"] = boot.verify(
            fresh_build.spec, fresh_build.disk, fresh_build.build, key=key, generalise_boot=True
        )
    assert (fresh_build.build.path / "verify" / "generalised.qcow2").is_file()
    with fresh_build.build.stage_run("seal") as holder:
        result = seal(fresh_build.spec, fresh_build.disk, fresh_build.build, key=key)
        holder["result"] = result
    # The passing verify boot was generalised: sealing took it over instead of booting again.
    assert result.generalised_in == "verify-boot"
    assert "/root/.ssh/authorized_keys: build key line" in result.removed
    assert not (fresh_build.build.path / "verify" / "generalised.qcow2").exists()
    require_verified(BuildDir.open(fresh_build.build.path), result.sealed_sha256)
    # Boot the sealed image on a throw-away overlay: sshd must come up with freshly made host keys.
    port = boot.free_port()
    sockets = Path(tempfile.mkdtemp(prefix="factory-test-"))
    out = fresh_build.build.path / "sealed-boot"
    out.mkdir()
    with boot.overlay(result.sealed_image, out / "overlay.qcow2") as disk:
        cfg = boot.vm_config(fresh_build.spec, disk, port, sockets, out / "bios.log")
        # Drained console: an unread serial port stalls the guest's boot on its own printk.
        with qemu.running(cfg, out / "console.log") as vm, boot.draining(vm):
            banner = _ssh_banner(port, fresh_build.spec.timeouts.ssh)
    assert banner.startswith("SSH-2.0-")
    assert digest.sha256_file(result.sealed_image) == result.sealed_sha256
