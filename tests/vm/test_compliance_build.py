"""`factory build` of the testbed spec with a compliance section, for real: the served kickstart carries
anaconda's oscap add-on (the testbed installer says it skipped it), and the sealed image is scanned offline
against the factory's testbed profile before it is exported; the result is bound to the sealed image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.core.digest import sha256_file

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "xccdf_org.imagefactory_profile_testbed"

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("oscap") is None, reason="needs oscap (openscap-scanner)"),
]


@pytest.fixture
def build_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fc-", dir="/tmp"))  # short: QEMU's sockets live under it
    yield root
    if not os.environ.get("FACTORY_KEEP_TEST_BUILDS"):
        shutil.rmtree(root, ignore_errors=True)


def test_testbed_build_with_compliance(build_root: Path) -> None:
    text = (ROOT / "specs" / "testbed.yaml").read_text().replace("../kickstarts/", f"{ROOT}/kickstarts/")
    text = text.replace("name: testbed\n", "name: testbed-compliance\n")
    text += f"compliance:\n  profile: {PROFILE}\n  remediate_at_install: true\n"
    spec = build_root / "testbed-compliance.yaml"
    spec.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "factory", "build", str(spec), "--json", "--build-dir", str(build_root / "b")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (outcome,) = json.loads(proc.stdout)
    assert outcome["compliance"] == f"{PROFILE}: 3 passed / 0 failed / 0 waived"
    assert list(outcome["stages"])[-4:] == ["seal", "compliance", "export", "promote"]
    build = Path(outcome["build_dir"])
    record = json.loads((build / "record.json").read_text())
    result = record["stages"]["compliance"]["result"]
    sealed = record["stages"]["seal"]["result"]["sealed_sha256"]
    assert result["image_sha256"] == sealed == sha256_file(build / "sealed.qcow2")
    assert result["report_sha256"] == sha256_file(build / "compliance" / "report.html")
    assert (build / "compliance" / "arf.xml").is_file()
    # The testbed installer read the served %addon section and said it did not apply it.
    assert "oscap addon: not applied on the testbed" in (build / "console.log").read_text(errors="replace")


def test_guestfish_reader_scans_like_debugfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader EL's xfs/LVM images get (libguestfs `tar-out`, its appliance booted under TCG), made to
    read an ext4 image by making the ext reader find no root: the verdict must be the same."""
    from factory.core import offline
    from factory.host import tools
    from factory.spec import Compliance, load_spec
    from factory.stages.compliance import compliance

    tree = tmp_path / "tree"
    (tree / "etc" / "ssh").mkdir(parents=True)
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "bin").symlink_to("usr/bin")
    (tree / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    (tree / "etc" / "debian_version").write_text("12.0\n")
    (tree / "etc" / "fstab").write_text("/dev/sda / ext4 defaults 0 1\n")  # inspection looks for a root
    (tree / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\n")
    (tree / "etc" / "shadow").write_text("root:$6$s$h:19000:0:99999:7:::\n")
    (tree / "etc" / "shadow").chmod(0o640)
    image = tmp_path / "disk.img"
    tools.run(["mkfs.ext4", "-q", "-F", "-d", tree, image, "16M"], timeout=60)
    base = load_spec(ROOT / "specs" / "testbed.yaml")
    spec = base.model_copy(update={"compliance": Compliance(profile=PROFILE)})
    by_debugfs = compliance.scan(spec, image, tmp_path / "debugfs")
    monkeypatch.setattr(offline, "root_partition", lambda raw: None)
    by_guestfish = compliance.scan(spec, image, tmp_path / "guestfish")
    assert (by_debugfs.reader, by_guestfish.reader) == ("debugfs", "guestfish")
    assert (
        by_guestfish.counts == by_debugfs.counts == compliance.Counts(passed=2, failed=1, waived=0, other=0)
    )
    assert [f.rule for f in by_guestfish.failing] == [
        "xccdf_org.imagefactory_rule_sshd_disable_root_password_login"
    ]
