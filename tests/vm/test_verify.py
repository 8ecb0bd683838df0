"""verify against a real testbed install under QEMU: the pass case and each bad input (no disk, no key,
panic, no sshd...)."""

from __future__ import annotations

import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fixtures_verify import Installed, fresh_copy, install_testbed, key_of, make_testbed_spec, session_testbed

from factory.cli import main
from factory.core import digest
from factory.core.record import BuildDir
from factory.errors import EXIT_VERIFY, VerifyError
from factory.spec import RuleOff
from factory.stages.promote.gate import require_verified
from factory.stages.verify.verify import verify
from factory.vm import sshkey

pytestmark = pytest.mark.vm


@pytest.fixture
def fresh_build(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Installed:
    return fresh_copy(session_testbed(tmp_path_factory), tmp_path)


def _processes_using(path: Path) -> list[int]:
    """PIDs whose command line mentions `path` (QEMU with the overlay, ssh masters with the config)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_verify_passes_and_leaves_the_image_untouched(fresh_build: Installed) -> None:
    before = digest.sha256_file(fresh_build.disk)
    result = verify(fresh_build.spec, fresh_build.disk, fresh_build.build, key=key_of(fresh_build.build))
    assert result.passed, result.junit.with_name("pytest.log").read_text()
    assert result.summary.failed == 0 and result.summary.errors == 0
    assert result.summary.passed >= 10
    # The testbed spec says aws.ena: true: the driver checks ran (not skipped) and passed.
    outcomes = {
        str(c.get("name")).split("[")[0]: [x.tag for x in c if x.tag not in ("system-out", "system-err")]
        for c in ET.parse(result.junit).getroot().iter("testcase")
    }
    assert outcomes.get("test_ena_module") == [], outcomes
    assert outcomes.get("test_nvme_initramfs") == [], outcomes
    assert result.image_sha256 == before == digest.sha256_file(fresh_build.disk)
    assert not (fresh_build.build.path / "verify" / "overlay.qcow2").exists()
    assert _processes_using(fresh_build.build.path) == []
    print(f"ssh ready {result.ssh_ready_s:.1f} s, suite {result.suite_s:.1f} s")


def test_verify_command_records_a_result_the_gate_reads_and_leaks_no_key(fresh_build: Installed) -> None:
    assert main(["verify", str(fresh_build.spec.source), "--build", str(fresh_build.build.path)]) == 0
    stage = BuildDir.open(fresh_build.build.path).stage("verify") or {}
    assert stage["status"] == "ok"
    assert stage["result"]["passed"] is True
    assert stage["result"]["image_sha256"] == digest.sha256_file(fresh_build.disk)
    assert Path(stage["result"]["junit"]).is_file()
    # The private half of the build key is in no artifact and not in the record.
    secret = (fresh_build.build.path / "build-key").read_text().splitlines()[1]
    for artifact in (fresh_build.build.path / "verify").iterdir():
        assert secret not in artifact.read_text(errors="replace"), artifact
    assert secret not in fresh_build.build.record_path.read_text()


@pytest.fixture
def blank(tmp_path: Path) -> Installed:
    """A build whose disk is a blank qcow2: SeaBIOS finds nothing to boot (no install needed)."""
    spec = make_testbed_spec(tmp_path / "spec")
    build = BuildDir.create(tmp_path / "build", spec.name)
    sshkey.create(build.key)
    disk = build.path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    return Installed(spec, build, disk)


def test_blank_disk_fails_fast_with_the_transcript(blank: Installed) -> None:
    started = time.monotonic()
    with pytest.raises(VerifyError) as err:
        verify(blank.spec, blank.disk, blank.build, key=key_of(blank.build))
    print(f"blank disk detected after {time.monotonic() - started:.1f} s")
    assert "no bootable disk" in err.value.message
    assert err.value.exit_code == EXIT_VERIFY
    assert blank.build.path / "verify" / "console.log" in err.value.artifacts
    assert not (blank.build.path / "verify" / "overlay.qcow2").exists()
    assert _processes_using(blank.build.path) == []


def test_blank_disk_through_the_command_is_recorded_and_refused_by_the_gate(blank: Installed) -> None:
    assert main(["verify", str(blank.spec.source), "--build", str(blank.build.path)]) == EXIT_VERIFY
    build = BuildDir.open(blank.build.path)
    assert (build.stage("verify") or {})["status"] == "failed"
    with pytest.raises(VerifyError, match="stage verify has not passed"):
        require_verified(build, digest.sha256_file(blank.disk))


def test_image_without_sshd_fails_with_the_transcript(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp() / "verify-vm"
    ks = root / "no-sshd.ks"
    ks.parent.mkdir(parents=True, exist_ok=True)
    text = (Path(__file__).resolve().parents[2] / "kickstarts" / "testbed.ks").read_text()
    ks.write_text(text.replace("services --enabled=ssh,network", "services --enabled=network --disabled=ssh"))
    installed = install_testbed(root, "no-sshd", ks)
    started = time.monotonic()
    with pytest.raises(VerifyError) as err:
        verify(installed.spec, installed.disk, installed.build, key=key_of(installed.build))
    print(f"missing sshd detected after {time.monotonic() - started:.1f} s")
    assert "SSH" in err.value.message
    assert installed.build.path / "verify" / "console.log" in err.value.artifacts
    assert _processes_using(installed.build.path) == []


def test_unknown_check_fails_before_booting(blank: Installed) -> None:
    skip = (RuleOff(rule="no_such_check", reason="a typo"),)
    bad = blank.spec.model_copy(update={"expect": blank.spec.expect.model_copy(update={"skip": skip})})
    with pytest.raises(VerifyError, match="unknown check"):
        verify(bad, blank.disk, blank.build, key=key_of(blank.build))
    assert not (blank.build.path / "verify" / "console.log").exists()
