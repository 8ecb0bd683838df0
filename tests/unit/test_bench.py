"""bench/ scripts are run as `python bench/NAME.py`: Python puts bench/ first on sys.path, so a script named
like a standard-library module (a `typing.py`) would shadow it for every other script there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_no_bench_module_shadows_the_standard_library(script: Path) -> None:
    assert script.stem not in sys.stdlib_module_names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_bench_scripts_import_with_bench_first_on_the_path(script: Path) -> None:
    """What `python bench/NAME.py` does before its main(): bench/ first on sys.path, then the imports."""
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r}); "
        f"import importlib; importlib.import_module({script.stem!r})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
