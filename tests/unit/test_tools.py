"""The one helper that runs external programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import ToolError
from factory.host import tools


def test_run_returns_output() -> None:
    assert tools.run(["sh", "-c", "echo hello"]).stdout == b"hello\n"


def test_missing_program_names_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        ToolError, match=r"qemu-img not found.*apt-get install qemu-utils.*dnf install qemu-img"
    ):
        tools.run(["qemu-img", "--version"])


def test_failure_carries_stderr_tail() -> None:
    with pytest.raises(ToolError, match=r"exit status 3: line2 \| line3 \| line4"):
        tools.run(["sh", "-c", "printf 'line1\\nline2\\nline3\\nline4\\n' >&2; exit 3"])


def test_timeout_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        tools.run(["sleep", "5"], timeout=1)


def test_check_false_returns_status() -> None:
    assert tools.run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_version_of_missing_program() -> None:
    assert tools.version("definitely-not-a-program-xyz") == "missing"
