"""The testbed end to end under QEMU TCG: build the ISO, install from a served kickstart, read the result
off the disk, boot the disk through extlinux to SSH, and check every injected failure leaves its marker.

QEMU's argv is built here (plain files for the serial console) so these tests exercise the testbed alone,
independently of the install engine's console handling.
"""

from __future__ import annotations

import functools
import http.server
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.testbed import Testbed, build_testbed

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
KICKSTART = ROOT / "kickstarts" / "testbed.ks"
QEMU = [
    "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
    "-display", "none", "-no-reboot",
]  # fmt: skip
LOG_PORT = "org.fedoraproject.anaconda.log.0"


@contextmanager
def serve(text: str) -> Iterator[str]:
    """Serve `text` as /ks.cfg on 127.0.0.1 only; yield the URL the guest uses (QEMU's 10.0.2.2)."""
    folder = Path(tempfile.mkdtemp(prefix="tb-ks-"))
    (folder / "ks.cfg").write_text(text)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://10.0.2.2:{server.server_address[1]}/ks.cfg"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Run:
    disk: Path
    serial: str
    log: str
    powered_off: bool
    seconds: float


def run_install(tb: Testbed, ks: str, work: Path, *, args: str = "", until: str | None = None,
                timeout: float = 180) -> Run:  # fmt: skip
    """Install onto work/disk.qcow2; stop at power-off, or as soon as `until` shows on the console."""
    work.mkdir(parents=True, exist_ok=True)
    disk, serial, log = work / "disk.qcow2", work / "serial.log", work / "anaconda.log"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "4G"], check=True)
    label = tb.volume_label.replace(" ", "\\x20")
    with serve(ks) as url:
        argv = [
            *QEMU,
            "-kernel", str(tb.kernel), "-initrd", str(tb.initrd),
            "-append", f"console=ttyS0,115200 inst.stage2=hd:LABEL={label} "
            f"inst.ks={url} {args}",
            "-drive", f"file={tb.iso},format=raw,if=ide,index=2,media=cdrom,readonly=on",
            "-drive", f"file={disk},format=qcow2,if=virtio",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
            "-device", "virtio-serial-pci",
            "-chardev", f"file,id=anacondalog,path={log}",
            "-device", f"virtserialport,chardev=anacondalog,name={LOG_PORT}",
            "-serial", f"file:{serial}",
        ]  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while time.monotonic() - start < timeout:
                if proc.poll() is not None:
                    break
                if until and serial.exists() and until in serial.read_text(errors="replace"):
                    time.sleep(1)  # let the rest of the message reach the file
                    break
                time.sleep(0.5)
            powered_off = proc.poll() is not None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    text = serial.read_text(errors="replace") if serial.exists() else ""
    return Run(disk, text, log.read_text(errors="replace") if log.exists() else "", powered_off,
               time.monotonic() - start)  # fmt: skip


def read_file(raw: Path, offset: int, path: str) -> str:
    """A file from the ext4 filesystem at byte `offset` of a raw disk image (debugfs: no mounting)."""
    out = subprocess.run(["debugfs", "-R", f"cat {path}", f"{raw}?offset={offset}"],
                         capture_output=True, check=True)  # fmt: skip
    return out.stdout.decode(errors="replace")


def first_partition_offset(raw: Path) -> int:
    with raw.open("rb") as f:
        mbr = f.read(512)
    assert mbr[510:512] == b"\x55\xaa", "no MBR boot signature"
    assert mbr[446] == 0x80, "partition 1 is not marked active (the syslinux MBR needs it)"
    (start_lba,) = struct.unpack_from("<I", mbr, 446 + 8)
    return int(start_lba) * 512


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def testbed() -> Testbed:
    return build_testbed()


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("tb-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="session")
def installed(testbed: Testbed, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One real install of kickstarts/testbed.ks (plus a %post with the test key), shared by the tests."""
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    ks = KICKSTART.read_text() + (
        "\n%post\nmkdir -p /root/.ssh\nchmod 700 /root/.ssh\n"
        f"echo '{pub}' > /root/.ssh/authorized_keys\nchmod 600 /root/.ssh/authorized_keys\n%end\n"
    )
    work = tmp_path_factory.mktemp("tb-install")
    run = run_install(testbed, ks, work, timeout=240)
    assert run.powered_off, f"install did not power off:\n{run.serial[-3000:]}"
    return run


@pytest.fixture(scope="session")
def disk(installed: Run) -> tuple[Path, int]:
    """The installed disk as raw (for debugfs) and the byte offset of its root filesystem."""
    raw = installed.disk.with_suffix(".raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(installed.disk), str(raw)], check=True)
    return raw, first_partition_offset(raw)


# ---------------------------------------------------------------- the install
def test_install_reports_progress_like_anaconda(installed: Run, testbed: Testbed) -> None:
    for line in ("Starting installer", "Fetching kickstart from http://10.0.2.2:",
                 "Creating disklabel on /dev/vda", "Creating ext4 on /dev/vda1",
                 "Performing post-installation setup tasks", "Running post-installation scripts",
                 "Installation complete."):  # fmt: skip
        assert line in installed.serial
    total = testbed.base_packages + 1
    assert f"Installing tree ({total}/{total})" in installed.serial
    assert " INFO anaconda: Installation complete." in installed.log
    assert installed.seconds < 120, f"install took {installed.seconds:.0f} s"


def test_ifcfg_written_like_anaconda(disk: tuple[Path, int]) -> None:
    ifcfg = read_file(*disk, "/etc/sysconfig/network-scripts/ifcfg-eth0")
    assert "ONBOOT=yes" in ifcfg.splitlines()
    assert "BOOTPROTO=dhcp" in ifcfg.splitlines()
    assert "DEVICE=eth0" in ifcfg.splitlines()


def test_root_password_is_the_kickstarts_hash(disk: tuple[Path, int]) -> None:
    shadow = read_file(*disk, "/etc/shadow")
    root = next(line for line in shadow.splitlines() if line.startswith("root:"))
    assert root.split(":")[1].startswith("$6$testbedsalt$")


def test_post_ran_in_the_installed_root_with_its_log(disk: tuple[Path, int]) -> None:
    assert "testbed kickstart %post ran" in read_file(*disk, "/etc/testbed-post-marker")
    assert "post: marker written" in read_file(*disk, "/root/ks-post.log")


def test_packages_and_bootloader_on_disk(disk: tuple[Path, int]) -> None:
    status = read_file(*disk, "/var/lib/dpkg/status")
    assert "Package: tree\nStatus: install ok installed" in status
    conf = read_file(*disk, "/boot/extlinux/extlinux.conf")
    assert "console=ttyS0,115200 console=tty0" in conf
    assert "Installation complete." in read_file(*disk, "/var/log/anaconda/anaconda.log")


def test_installed_disk_boots_to_ssh(installed: Run, ssh_key: Path, tmp_path: Path) -> None:
    qcow = installed.disk
    overlay = tmp_path / "boot.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(qcow), str(overlay)],
                   check=True)  # fmt: skip
    port = _free_port()
    serial = tmp_path / "boot.log"
    argv = [*QEMU, "-drive", f"file={overlay},format=qcow2,if=virtio",
            "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
            "-serial", f"file:{serial}"]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ssh = [
        "ssh", "-i", str(ssh_key), "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1",
    ]  # fmt: skip
    try:
        out = None
        while time.monotonic() - start < 150:
            cmd = "dpkg-query -W -f '${Status}' tree; service ssh status; uname -r"
            res = subprocess.run([*ssh, cmd], check=False, capture_output=True, timeout=30)
            if res.returncode == 0:
                out = res.stdout.decode()
                break
            time.sleep(1)
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()
    assert out is not None, f"no SSH within 150 s:\n{serial.read_text(errors='replace')[-2000:]}"
    assert "install ok installed" in out
    assert "running" in out
    print(f"first boot to SSH: {elapsed:.1f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- injected failures
BAD_FSTYPE_LINE = KICKSTART.read_text().splitlines().index("part / --fstype=ext4 --size=1024 --grow") + 1


@pytest.mark.parametrize(
    ("args", "ks_edit", "marker"),
    [
        pytest.param("testbed.fail=crash", None, "Traceback (most recent call last):", id="crash"),
        pytest.param("testbed.fail=panic", None, "Kernel panic", id="panic"),
        pytest.param(
            "testbed.fail=post", None, "Error code 1 running the kickstart script at line", id="post"
        ),
        pytest.param(
            "",
            ("--fstype=ext4", "--fstype=zfs"),
            f"The following problem occurred on line {BAD_FSTYPE_LINE} of the kickstart file:",
            id="bad-ks",
        ),
        pytest.param("", ("\ntree\n", "\nno-such-package\n"), "packaging: Installation failed", id="no-pkg"),
    ],
)
def test_failure_leaves_its_marker_and_no_poweroff(
    testbed: Testbed, tmp_path: Path, args: str, ks_edit: tuple[str, str] | None, marker: str
) -> None:
    ks = KICKSTART.read_text()
    if ks_edit is not None:
        ks = ks.replace(*ks_edit)
    run = run_install(testbed, ks, tmp_path, args=args, until=marker, timeout=180)
    assert marker in run.serial, run.serial[-3000:]
    assert not run.powered_off, "a failed install must not power off (the factory would call it success)"
    assert "Installation complete." not in run.serial
