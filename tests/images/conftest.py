"""Fixtures shared by the acceptance checks (the spec wiring lives in the repository's root conftest.py)."""

from __future__ import annotations

import pytest
from testinfra.host import Host


@pytest.fixture(scope="module")
def shadow(host: Host) -> str:
    """/etc/shadow as text (the suite logs in as root, which may read it)."""
    content: str = host.file("/etc/shadow").content_string
    return content
