"""What the package inventory adds to a build: the guest query, the SBOM, the diff.

    python bench/package_inventory.py [BUILD_DIR ...]

Host side, on this Debian machine's own dpkg database (the same script verify sends to the guest): the
query, parsing, the CycloneDX document, its schema validation (which grows with the square of the package
count: jsonschema's uniqueItems; the tests run it, export does not), and a diff. For each BUILD_DIR given,
the seconds the query took in that build's verify boot (under TCG, over the suite's SSH connection), from
its record.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from factory.core.record import BuildDir
from factory.stages.verify import inventory, pkgdiff, sbom


def _timed(label: str, started: float) -> float:
    seconds = time.monotonic() - started
    print(f"{label:<44} {seconds:7.2f} s")
    return seconds


def main(argv: list[str]) -> int:
    started = time.monotonic()
    out = subprocess.run(
        ["sh", "-s"], input=inventory.QUERY_SCRIPT.encode(), capture_output=True, timeout=300, check=True
    ).stdout.decode()
    _timed("query script on this host", started)
    started = time.monotonic()
    inv = inventory.parse(out)
    _timed(f"parse ({len(inv.packages)} packages)", started)
    started = time.monotonic()
    text = sbom.document(inv, name="bench", version="0", image_sha256="0" * 64)
    _timed("SBOM: build + serialise (what export does)", started)
    started = time.monotonic()
    assert sbom.validate(text) is None
    _timed("SBOM: schema validation (what the tests do)", started)
    started = time.monotonic()
    pkgdiff.diff_inventories(inv, inv)
    _timed("diff against itself", started)
    for path in argv:
        result = (BuildDir.open(Path(path)).stage("verify") or {}).get("result") or {}
        if "inventory_s" not in result:
            print(f"{path}: no verify result with an inventory in its record")
            continue
        print(
            f"{path}: inventory query in the verify boot {result['inventory_s']} s "
            f"for {result.get('packages')} packages (suite {result.get('suite_s', '?')} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
