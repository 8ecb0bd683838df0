"""Seconds to add verify's throw-away key to an overlay offline, per way (issue 15: verify any image).

    python bench/verify_access.py [IMAGE]      # default: a 2 GiB ext4 image with 600 MiB of data

Prints the debugfs way (ext roots) and the guestfish way (every other root; its appliance boots under TCG),
each on a fresh overlay of the same image; the image's sha256 is checked unchanged after both.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from factory.stages.verify import access

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBENCHBENCHBENCHBENCHBENCHBENCHBENCHBENCH bench"


def sample_image(folder: Path) -> Path:
    root = folder / "root"
    (root / "etc").mkdir(parents=True)
    (root / "root").mkdir()
    # Enough of a Debian for libguestfs's inspection (`guestfish -i`) to call it an OS.
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    (root / "etc" / "debian_version").write_text("12.0\n")
    (root / "bin").mkdir()
    shutil.copy("/bin/true", root / "bin" / "sh")
    (root / "etc" / "fstab").write_text("LABEL=root / ext4 defaults 0 1\n")
    with (root / "data").open("wb") as f:
        for _ in range(600):
            f.write(hashlib.sha512(f.tell().to_bytes(8, "little")).digest() * 16384)
    raw = folder / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", root, "-L", "root", raw, "2G"], check=True)
    image = folder / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, image], check=True)
    return image


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def timed(image: Path, name: str, run: Callable[[Path], None]) -> None:
    overlay = image.with_name(f"overlay-{name}.qcow2")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay], check=True
    )
    started = time.monotonic()
    run(overlay)
    print(f"{name}: {time.monotonic() - started:.1f} s, overlay {overlay.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-access-") as tmp:
        image = Path(sys.argv[1]) if len(sys.argv) > 1 else sample_image(Path(tmp))
        before = sha(image)
        timed(image, "debugfs", lambda disk: access.authorize_offline(disk, KEY, "tcg"))
        timed(image, "guestfish", lambda disk: access.authorize_guestfish(disk, KEY, "tcg"))
        print(f"image sha256 unchanged: {sha(image) == before}")


if __name__ == "__main__":
    main()
