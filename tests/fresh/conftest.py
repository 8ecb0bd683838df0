"""The pristine-root run of README command 1 starts in the background as soon as the session is collected,
and its test moves to the end of the session, where it collects the result.

Why: most of its minutes are mmdebstrap, apt and pip waiting on the registries, then one TCG build. Run
in line it added about five minutes to CI; in the background it overlaps the tests that boot no VM (aws,
targets, unit: several minutes of their own) and is long done when its test reads it. Nothing outlives
the session: an unfinished run is stopped at the end (SIGTERM first, so pristine.sh's trap unmounts and
deletes its root)."""

from __future__ import annotations

import os
import shutil

import pytest
from pristine_run import RUN_KEY, TEST_NAME, cannot_run, readme_commands, start


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    pristine = [item for item in items if item.name == TEST_NAME]
    items[:] = [item for item in items if item.name != TEST_NAME] + pristine


def pytest_collection_finish(session: pytest.Session) -> None:
    # After every plugin's -k / -m / --deselect: only a session that will run the test starts the run.
    if session.config.option.collectonly or not any(i.name == TEST_NAME for i in session.items):
        return
    if os.environ.get("FACTORY_SKIP_PRISTINE") == "1" or cannot_run() is not None:
        return  # the test itself skips (or, in CI, fails) and says why
    start(session.config, readme_commands()[0])


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None:
        run.stop()
        shutil.rmtree(run.log.parent, ignore_errors=True)
