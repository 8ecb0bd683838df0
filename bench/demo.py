"""Benchmark: the README's demo build, and what sealing adds to it (testbed, TCG on this project's machines).

    python bench/demo.py [--runs N]

Each run is `factory build specs/testbed.yaml --promote` into a fresh build folder, after the testbed ISO is
built and cached (not timed). Prints the wall time, each stage's seconds and "seal adds": the seal stage plus
the seconds the verify boot spent generalising the image for it. Goals: seal adds <= 10 s, demo < 90 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run() -> tuple[float, dict[str, float], float]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "factory", "build", "specs/testbed.yaml", "--promote", "--json",
             "--build-dir", tmp],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(f"the demo build failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        outcome = json.loads(proc.stdout)[0]
        stages = {name: float(s["seconds"]) for name, s in outcome["stages"].items()}
        record = json.loads((Path(outcome["build_dir"]) / "record.json").read_text())
        generalise = float(record["stages"]["verify"]["result"].get("generalise_s", 0.0))
    return wall, stages, generalise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from factory.testbed import build_testbed

    build_testbed()  # cached after the first time: not part of the figures
    walls, adds = [], []
    for i in range(args.runs):
        wall, stages, generalise = one_run()
        seal_adds = stages.get("seal", 0.0) + generalise
        walls.append(wall)
        adds.append(seal_adds)
        line = ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
        seal_s = stages.get("seal", 0.0)
        print(
            f"run {i + 1}: demo {wall:.1f} s ({line}); seal adds {seal_adds:.1f} s "
            f"(verify's generalising {generalise:.1f} s + seal stage {seal_s:.1f} s)"
        )
    print(
        f"demo: median {statistics.median(walls):.1f} s (goal < 90 s); "
        f"seal adds: median {statistics.median(adds):.1f} s (goal <= 10 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
