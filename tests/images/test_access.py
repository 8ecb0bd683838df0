"""Secrets: passwords hashed or locked, no private keys, no installer kickstart left behind.

The build key's *public* line is in /root/.ssh/authorized_keys while verify runs (that is how the suite
logs in); its removal is checked after sealing, offline, by factory.stages.seal.seal.
"""

from __future__ import annotations

import pytest
from testinfra.host import Host

from factory.spec import Expect
from factory.stages.verify.checks import (
    ANACONDA_KICKSTARTS,
    INSTALLER_KICKSTARTS,
    cleartext_kickstart_lines,
    password_state,
    root_password_ok,
    shadow_field,
    unsafe_accounts,
)

KEY_DIRS = ("/root", "/home", "/tmp", "/var/tmp")


def test_root_password(shadow: str, expect: Expect) -> None:
    field = shadow_field(shadow, "root")
    assert field is not None, "/etc/shadow has no root entry"
    state = password_state(field)
    assert root_password_ok(field, expect.root_password), (
        f"root's password is {state}, not {expect.root_password}"
    )


def test_no_cleartext_password(host: Host, shadow: str) -> None:
    assert unsafe_accounts(shadow) == [], "accounts with an empty or clear-text password in /etc/shadow"
    for path in ANACONDA_KICKSTARTS:
        ks = host.file(path)
        if ks.exists:
            lines = cleartext_kickstart_lines(ks.content_string)
            assert lines == [], f"{path} has a clear-text password on line(s) {lines}"


def test_no_kickstart_left(host: Host) -> None:
    left = [p for p in INSTALLER_KICKSTARTS if host.file(p).exists]
    assert left == [], f"installer kickstart copies left in the image: {left}"
    for path in ANACONDA_KICKSTARTS:
        ks = host.file(path)
        # Anaconda's own record of the install stays until sealing removes it; until then, root only.
        if ks.exists:
            assert ks.user == "root" and ks.mode & 0o077 == 0, (
                f"{path} is readable by others (mode {ks.mode:o})"
            )


def test_no_private_keys(host: Host) -> None:
    dirs = [d for d in KEY_DIRS if host.file(d).is_directory]
    if not dirs:
        pytest.skip(f"none of {', '.join(KEY_DIRS)} exists")
    # -xdev: never wander into /proc-like mounts; small files only: keys are a few KiB.
    # One %s per folder: testinfra quotes each argument, and a joined string would be one path that
    # does not exist (find would then find nothing, and the check could never fail).
    paths = " ".join(["%s"] * len(dirs))
    found = host.run(
        f"find {paths} -xdev -type f -size -64k -exec grep -l -e 'PRIVATE KEY-----' {{}} +", *dirs
    )
    assert found.stdout.split() == [], f"private key material on disk: {found.stdout.split()}"
