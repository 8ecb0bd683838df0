"""The promotion gate: only an image whose exact hash descends from a passing verification may leave."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factory.core.record import BuildDir
from factory.errors import EXIT_VERIFY, InputError, VerifyError
from factory.stages.promote.gate import require_verified
from tests.records import artifact, exported, sealed, verified

INSTALLED = "a" * 64
SEALED = "b" * 64
RAW = "c" * 64
OTHER = "d" * 64


def _build(tmp_path: Path, stages: dict[str, tuple[str, Any]]) -> BuildDir:
    build = BuildDir.create(tmp_path, "testbed", "b1")
    for name, (status, result) in stages.items():
        build.record_stage(name, status, result=result)
    return build


def _verify(passed: bool = True, sha: str = INSTALLED) -> tuple[str, Any]:
    return "ok", verified(sha, passed)


def _seal(source: str = INSTALLED, recheck: bool = True) -> tuple[str, Any]:
    return "ok", sealed(source, SEALED, Path("/x/sealed.qcow2"), recheck)


def _export(source: str = SEALED) -> tuple[str, Any]:
    return "ok", exported(artifact("raw", Path("/x/disk.raw"), RAW, source))


GOOD = {"verify": _verify(), "seal": _seal(), "export": _export()}


@pytest.mark.parametrize(
    ("stages", "image"),
    [
        pytest.param(GOOD, SEALED, id="sealed-image"),
        pytest.param(GOOD, RAW, id="exported-raw-of-sealed-image"),
        pytest.param({"verify": _verify(), "seal": _seal()}, SEALED, id="sealed-not-yet-exported"),
    ],
)
def test_gate_accepts(tmp_path: Path, stages: dict[str, Any], image: str) -> None:
    require_verified(_build(tmp_path, stages), image)


@pytest.mark.parametrize(
    ("stages", "image", "says"),
    [
        pytest.param({}, SEALED, "stage verify has not passed (status: not run)", id="never-verified"),
        pytest.param({**GOOD, "verify": ("failed", None)}, SEALED, "status: failed", id="verify-failed"),
        pytest.param(
            {**GOOD, "verify": ("running", None)}, SEALED, "status: running", id="verify-interrupted"
        ),
        pytest.param({**GOOD, "verify": _verify(passed=False)}, SEALED, "did not pass", id="tests-failed"),
        pytest.param({**GOOD, "verify": _verify(sha="")}, SEALED, "did not pass", id="verify-without-hash"),
        pytest.param({"verify": _verify()}, SEALED, "stage seal has not passed", id="not-sealed"),
        pytest.param(
            {**GOOD, "seal": ("failed", None)}, SEALED, "stage seal has not passed", id="seal-failed"
        ),
        pytest.param(
            {**GOOD, "seal": _seal(source=OTHER)},
            SEALED,
            "not made from the verified image",
            id="sealed-other-disk",
        ),
        pytest.param(
            {**GOOD, "seal": _seal(recheck=False)}, SEALED, "failed its re-check", id="recheck-failed"
        ),
        pytest.param(GOOD, INSTALLED, "has no passing verification", id="unsealed-installed-disk"),
        pytest.param(GOOD, OTHER, "has no passing verification", id="unknown-hash"),
        pytest.param(
            {**GOOD, "export": _export(source=OTHER)},
            RAW,
            "has no passing verification",
            id="export-of-other-disk",
        ),
        pytest.param(
            {**GOOD, "export": ("failed", _export()[1])},
            RAW,
            "has no passing verification",
            id="export-failed",
        ),
    ],
)
def test_gate_refuses(tmp_path: Path, stages: dict[str, Any], image: str, says: str) -> None:
    with pytest.raises(VerifyError) as err:
        require_verified(_build(tmp_path, stages), image)
    assert says in err.value.message
    assert err.value.exit_code == EXIT_VERIFY


def test_gate_refuses_a_hand_edited_result(tmp_path: Path) -> None:
    # "passed": true alone is not a verification: a result that does not load as one is refused.
    build = _build(tmp_path, {**GOOD, "verify": ("ok", {"passed": True, "image_sha256": INSTALLED})})
    with pytest.raises(InputError, match="the recorded verify result is unreadable"):
        require_verified(build, SEALED)
