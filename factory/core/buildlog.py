"""What is logged where: the build's log file gets everything, the terminal only the factory's own lines.

Libraries log warnings with whole stack traces (botocore: "Refreshing temporary credentials failed during
mandatory refresh period" + a traceback, just before the error the factory reports anyway). Without
`--debug` the terminal shows only records of the `factory.*` loggers, one line each; every record at INFO
and above, third-party ones with their tracebacks, goes to `build/<spec>/<build-id>/factory.log` while a
build or promotion runs. `--debug` (or FACTORY_DEBUG) shows everything on the terminal, as before.

The file never gets DEBUG records: at that level botocore logs response bodies, which carry temporary
credentials. With `-j N` every build's log file holds the library records of all builds running then.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _ours(record: logging.LogRecord) -> bool:
    return record.name == "factory" or record.name.startswith("factory.")


class _OneLine(logging.Formatter):
    """`LEVEL logger: message`, never a traceback (that is in the build's log file)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.name}: {record.getMessage()}"


class _Terminal(logging.StreamHandler):  # type: ignore[type-arg]
    """The factory's terminal handler (a class of its own so configure() replaces only its own)."""


def configure(debug: bool) -> None:
    """Set up the terminal handler (the CLI calls this first); handlers of others are left alone."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Terminal)]:
        root.removeHandler(handler)
    if debug:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        root.setLevel(logging.DEBUG)
        return
    terminal = _Terminal(sys.stderr)
    terminal.setLevel(logging.WARNING)
    terminal.addFilter(_ours)
    terminal.setFormatter(_OneLine())
    root.addHandler(terminal)
    # INFO reaches the build's log file; the terminal handler still shows only WARNING and above.
    root.setLevel(logging.INFO)


@contextlib.contextmanager
def capture(path: Path) -> Iterator[Path]:
    """Append every INFO+ record (with tracebacks) to the build's log file (BuildDir.log) while the block
    runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
