"""The top-level handler: one line and a documented exit code for every error, never a traceback."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from factory import cli
from factory.errors import EXIT_INSTALL, EXIT_USAGE, InstallError, UsageError


def _with_command(monkeypatch: pytest.MonkeyPatch, func: Any) -> None:
    real = cli.build_parser

    def parser() -> argparse.ArgumentParser:
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.add_parser("boom").set_defaults(func=func)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        pytest.param(UsageError("bad flag"), EXIT_USAGE, "error: bad flag", id="usage"),
        pytest.param(
            InstallError("panic", "Kernel panic"), EXIT_INSTALL, "install failed (panic)", id="install"
        ),
        pytest.param(RuntimeError("oops"), cli.EXIT_INTERNAL, "internal error: RuntimeError: oops", id="bug"),
        pytest.param(KeyboardInterrupt(), 130, "interrupted", id="ctrl-c"),
    ],
)
def test_errors_become_one_line_and_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    code: int,
    line: str,
) -> None:
    def raiser(args: argparse.Namespace) -> int:
        raise exc

    _with_command(monkeypatch, raiser)
    assert cli.main(["boom"]) == code
    err = capsys.readouterr().err
    assert line in err
    assert "Traceback" not in err


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_debug_shows_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def raiser(args: argparse.Namespace) -> int:
        raise RuntimeError("oops")

    _with_command(monkeypatch, raiser)
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "boom"])
