"""The spec's web identity settings beyond tests/unit/test_spec.py's per-field table: both token kinds at
once, one profile with two settings, the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factory.errors import SpecError
from factory.spec import load_spec

ROLE = "arn:aws:iam::333333333333:role/image-factory-promote"


def _write(tmp_path: Path, target_extra: str, aws_extra: str = "") -> Path:
    (tmp_path / "t.ks").write_text("text\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\nos: testbed\nmedia: {builtin: testbed, volume_label: X}\nkickstart: {path: t.ks}\n"
        "aws:\n  source_profile: build\n  source_region: us-east-1\n"
        f"{aws_extra}"
        "  targets:\n    - profile: prod\n      regions: {us-east-1: alias/k}\n"
        f"{target_extra}"
    )
    return spec


BAD: dict[str, tuple[str, str]] = {
    "both-token-file-and-source": (
        f"      web_identity: {{role_arn: '{ROLE}', token_file: /t, token_from: github-actions}}\n",
        "exactly one of token_file or token_from",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_web_identity_is_a_spec_error_with_its_path(tmp_path: Path, case: str) -> None:
    extra, expected = BAD[case]
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, extra))
    assert expected in str(info.value.message) + str(info.value.details)


def test_same_profile_with_two_web_identities_is_refused(tmp_path: Path) -> None:
    aws_extra = f"  source_web_identity: {{role_arn: '{ROLE}', token_file: /a}}\n"
    target = "    - profile: build\n      regions: {us-east-1: alias/k}\n"
    target += f"      web_identity: {{role_arn: '{ROLE}', token_file: /b}}\n"
    with pytest.raises(SpecError) as info:
        load_spec(_write(tmp_path, target, aws_extra))
    assert "different web_identity" in str(info.value.message) + str(info.value.details)


def test_good_web_identity_defaults(tmp_path: Path) -> None:
    spec = load_spec(
        _write(tmp_path, f"      web_identity: {{role_arn: '{ROLE}', token_from: github-actions}}\n")
    )
    assert spec.aws is not None
    wid: Any = spec.aws.targets[0].web_identity
    assert (wid.audience, wid.duration_seconds, wid.session_name) == (
        "sts.amazonaws.com",
        3600,
        "image-factory",
    )
