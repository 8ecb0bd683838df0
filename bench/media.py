"""Hash throughput of factory.core.digest.sha256_file (what verifying a 4 GB ISO costs), on a 1 GB sparse
file.

Run: python bench/media.py [SIZE_MIB]. Sparse: this measures hashing, not the disk.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from factory.core import digest


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sparse.img"
        with path.open("wb") as fh:
            fh.truncate(size_mib * 1024 * 1024)
        start = time.perf_counter()
        digest.sha256_file(path)
        elapsed = time.perf_counter() - start
    print(f"sha256 of {size_mib} MiB: {elapsed:.2f} s, {size_mib / elapsed:.0f} MiB/s")


if __name__ == "__main__":
    main()
