"""`factory build specs/testbed.yaml` on a real 160-column terminal (tmux), its screen read back: the
live display issue 11 found misleading (stale validate rows, a spinner after the end, a skip reason that
was a guess). A full testbed build, then --from export and --from verify (fails: the key is gone once
sealed) into the same build directory."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.terminal import SPINNER, Pane

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(?P<mark>\S) (?P<label>[a-z]+)(?: +(?P<clock>\d+:\d\d))?(?P<rest>.*)$")
STAGES = ["validate", "media", "install", "verify", "seal", "compliance", "export", "promote"]

pytestmark = pytest.mark.vm


@pytest.fixture
def work() -> Iterator[Path]:
    """Not pytest's tmp_path: other pytest sessions on a shared host prune those while a build runs."""
    root = Path(tempfile.mkdtemp(prefix="fb-screen-", dir=os.environ.get("FACTORY_TEST_BUILDS", "/tmp")))
    try:
        yield root
    finally:
        if not os.environ.get("FACTORY_KEEP_TEST_BUILDS"):
            shutil.rmtree(root, ignore_errors=True)


def spec_with_room(work: Path) -> Path:
    """specs/testbed.yaml with the wider timeouts the other VM tests use: this machine's TCG guests are
    slow when it is shared (the spec's 120 s for SSH is too tight there)."""
    spec = yaml.safe_load((ROOT / "specs" / "testbed.yaml").read_text())
    spec["kickstart"]["path"] = str(ROOT / "kickstarts" / "testbed.ks")
    spec["timeouts"].update(install=1200, ssh=600, verify=900)
    path = work / "testbed.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def build_on_a_terminal(spec: Path, build_root: Path, *extra: str, status: int = 0) -> list[str]:
    """Every line the build drew on a 160x40 terminal (scrollback included), once it has exited with
    `status`."""
    argv = [sys.executable, "-m", "factory", "build", str(spec), "--build-dir", str(build_root), *extra]
    pane = Pane(argv, cwd=ROOT)
    try:
        exited = pane.wait_exit(timeout=1500)
        screen = pane.screen(history=True)
        assert exited == status, "\n".join(screen)
        time.sleep(1.5)
        assert pane.screen(history=True) == screen
        return screen
    finally:
        pane.close()


def stage_rows(screen: list[str]) -> dict[str, re.Match[str]]:
    """The live rows: every line above the summary table that is a stage row, each stage at most once."""
    end = next(i for i, line in enumerate(screen) if line.strip() == "factory build")
    found = [m for line in screen[:end] if (m := ROW.match(line)) and m["label"] in STAGES]
    labels = [m["label"] for m in found]
    assert len(labels) == len(set(labels)), f"duplicated rows: {labels}\n" + "\n".join(screen)
    assert not SPINNER & set("".join(screen)), "a spinner is left after the build:\n" + "\n".join(screen)
    return {m["label"]: m for m in found}


@pytest.mark.timeout(3000)
def test_build_then_from_verify_on_a_terminal(work: Path) -> None:
    spec = spec_with_room(work)
    build_root = work / "build"
    first = stage_rows(build_on_a_terminal(spec, build_root))
    assert list(first) == STAGES  # validate once, no stale row left from an earlier draw
    assert [first[s]["mark"] for s in STAGES] == ["✓", "✓", "✓", "✓", "✓", "-", "✓", "-"]
    assert first["compliance"]["rest"].strip() == "skipped: not needed"  # the spec has no compliance
    assert first["promote"]["rest"].strip() == "skipped: not requested"

    # --from export: every stage before it was done for this image, promote was not asked for.
    last = stage_rows(build_on_a_terminal(spec, build_root, "--from", "export"))
    assert list(last) == STAGES
    assert [last[s]["mark"] for s in STAGES] == ["✓", "✓", "-", "-", "-", "-", "✓", "-"]
    for stage in ("install", "verify", "seal"):
        assert last[stage]["rest"].strip() == "skipped: done before for this image", stage
    assert last["compliance"]["rest"].strip() == "skipped: not needed"
    assert last["promote"]["rest"].strip() == "skipped: not requested"

    # Last (a failed verify is recorded: the image counts as unverified afterwards). Sealing removed
    # the build key, so verify cannot run again (the documented way is --from install):
    # its row fails (exit 6), nothing is left spinning, no row is drawn twice.
    failed = build_on_a_terminal(spec, build_root, "--from", "verify", status=6)
    again = stage_rows(failed)
    assert list(again) == ["validate", "media", "install", "verify"], "\n".join(failed)
    assert again["install"]["mark"] == "-"
    assert again["install"]["rest"].strip() == "skipped: done before for this image"
    assert again["verify"]["mark"] == "✗"
    assert any("the build key is gone" in line for line in failed)
