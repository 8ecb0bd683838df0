"""A small real root filesystem and a sealed-like disk holding it (the OCI export and registry tests).

The root: static busybox as /bin/sh, the host's dpkg-query with its libraries and a dpkg status file (so
testinfra's chroot backend can ask it about packages), owners, a setuid file and a hard link, plus what a
container must not carry: a kernel, modules, SSH host keys, a machine-id, a log and a device node. The disk:
a DOS partition table and one ext4 filesystem filled with `mkfs.ext4 -d`, as qcow2, like a sealed image.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from factory.host import tools

EPOCH = 1_700_000_000
ROOT_HASH = "$y$j9T$abcdefghijklmnop$0123456789abcdefghijklmnopqrstuvwxyzABCDE"


def _copy_with_libs(program: str, root: Path) -> None:
    """A dynamically linked host program and the libraries ldd names, at the same paths in `root`."""
    path = Path(shutil.which(program) or program).resolve()
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
    files = [path] + [Path(w) for line in out.splitlines() for w in line.split() if w.startswith("/")]
    for f in files:
        dest = root / str(f).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.resolve(), dest)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    if not (root / "usr/bin" / path.name).exists():
        os.symlink(str(path), root / "usr/bin" / path.name)


def make_tree(root: Path) -> None:
    for d in ("bin", "etc/ssh", "boot", "lib/modules/6.1.0-testbed/kernel", "var/log", "var/lib/dpkg", "root",
              "tmp", "home/user", "dev", "usr/bin"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        if not (root / "bin" / applet).exists():
            os.symlink("busybox", root / "bin" / applet)
    _copy_with_libs("dpkg-query", root)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Testbed"\n')
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (root / "etc/shadow").write_text(f"root:{ROOT_HASH}:19000:0:99999:7:::\nuser:!:19000::::::\n")
    os.chmod(root / "etc/shadow", 0o600)
    (root / "var/lib/dpkg/status").write_text(
        "Package: tree\nStatus: install ok installed\nVersion: 2.1.0-1\nArchitecture: amd64\n"
        "Maintainer: t <t@example.org>\nDescription: tree\n\n"
    )
    (root / "home/user/notes").write_text("mine\n")
    os.chown(root / "home/user/notes", 1000, 1000)
    os.chown(root / "home/user", 1000, 1000)
    shutil.copy2(root / "bin/busybox", root / "usr/bin/su")
    os.chmod(root / "usr/bin/su", 0o4755)  # setuid must survive the offline read
    (root / "usr/bin/data").write_bytes(b"shared by two names\n")
    os.link(root / "usr/bin/data", root / "usr/bin/data-link")
    # What the container must not carry:
    (root / "boot/vmlinuz-6.1.0-testbed").write_bytes(b"\x7fkernel")
    (root / "lib/modules/6.1.0-testbed/kernel/virtio.ko").write_bytes(b"module")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/log/messages").write_text("boot log\n")
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def make_disk(root: Path, out: Path) -> None:
    """A qcow2 disk holding `root` as the ext4 filesystem of its one partition (as the testbed installs)."""
    raw = out.with_suffix(".raw")
    raw.unlink(missing_ok=True)
    tools.run(["truncate", "-s", "96M", raw])
    tools.run(["sfdisk", "-q", raw], input=b"label: dos\nstart=2048, type=83, bootable\n")
    tools.run(["mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", root, "-L", "root", raw, "95M"])
    tools.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out])
    raw.unlink()
