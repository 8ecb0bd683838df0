"""README command 1 on a truly fresh machine: a Debian 12 root made anew by mmdebstrap (Debian's own Python,
PEP 668, no pip, no kernel in /boot), the command run in it exactly as the README writes it.

This machine is not fresh (packages installed by earlier work stay), so a green run here proves nothing
about a newcomer's; the pristine root does. It takes several minutes, in the background from the start of
the session (conftest.py), and its test runs last. Skip it locally with
FACTORY_SKIP_PRISTINE=1. In CI (CI set) it never skips: the switch is refused there.
"""

from __future__ import annotations

import os

import pytest
from pristine_run import RUN_KEY, cannot_run, readme_commands

pytestmark = [pytest.mark.vm, pytest.mark.pristine]


def test_readme_has_two_commands_that_assume_no_pip() -> None:
    first, second = readme_commands()
    # A stock Debian 12 has no pip and refuses `pip install` into its Python (PEP 668).
    assert not first.startswith("pip ") and "python3 -m venv" in first
    assert "--install-host-deps" in first
    assert second.startswith(".venv/bin/")


def test_command_1_in_a_pristine_debian_root(request: pytest.FixtureRequest) -> None:
    in_ci = bool(os.environ.get("CI"))
    if os.environ.get("FACTORY_SKIP_PRISTINE") == "1":
        if in_ci:
            pytest.fail(
                "FACTORY_SKIP_PRISTINE is refused in CI: the pristine root is CI's proof of command 1"
            )
        pytest.skip("FACTORY_SKIP_PRISTINE=1: the pristine-root run of README command 1 is skipped")
    why = cannot_run()
    if why is not None:
        if in_ci:
            pytest.fail(f"the pristine-root run {why}")
        pytest.skip(f"the pristine-root run {why}")
    # Started in the background when the session was collected (conftest.py); this test runs last.
    run = request.config.stash.get(RUN_KEY, None)
    assert run is not None, "the pristine-root run was not started at collection"
    code, output = run.wait()
    tail = output[-6000:]
    assert code == 0, f"README command 1 failed in a pristine Debian 12 root (exit {code}):\n{tail}"
    # The demo went through every stage, promotion included.
    for stage in ("validate", "media", "install", "verify", "seal", "export", "promote"):
        assert f"{stage}: ok" in output, tail
