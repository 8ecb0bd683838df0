"""Library log records go to the build's log file, not the terminal; the factory's own warnings show."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.core import buildlog


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, buildlog._Terminal)]:
        root.removeHandler(handler)
    root.setLevel(level)


def _connect() -> None:
    raise ConnectionError("Could not connect to the endpoint URL")


def _library_warning_with_traceback() -> None:
    try:
        _connect()
    except ConnectionError:
        logging.getLogger("botocore.credentials").warning(
            "Refreshing temporary credentials failed during mandatory refresh period.", exc_info=True
        )


def test_library_traceback_goes_to_the_build_log_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], configured: None
) -> None:
    buildlog.configure(debug=False)
    with buildlog.capture(tmp_path / "factory.log") as path:
        _library_warning_with_traceback()
        logging.getLogger("factory.targets.aws.promote").warning("one line of ours")
        logging.getLogger("factory.targets.aws.promote").debug(
            "never in the file: DEBUG may carry credentials"
        )
    err = capsys.readouterr().err
    assert err == "WARNING factory.targets.aws.promote: one line of ours\n"
    text = path.read_text()
    assert "WARNING botocore.credentials: Refreshing temporary credentials failed" in text
    assert "Traceback (most recent call last)" in text and "ConnectionError" in text
    assert "one line of ours" in text
    assert "never in the file" not in text
    # Outside a build nothing more is written to it.
    _library_warning_with_traceback()
    assert path.read_text() == text


def test_debug_shows_library_records_on_the_terminal(
    capsys: pytest.CaptureFixture[str], configured: None
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a fresh `factory --debug` process
    try:
        buildlog.configure(debug=True)
        _library_warning_with_traceback()
        err = capsys.readouterr().err
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers.extend(saved)
    assert "Refreshing temporary credentials failed" in err
    assert "Traceback" in err
