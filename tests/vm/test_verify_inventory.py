"""verify records the testbed's installed packages over its SSH connection, and diffs them (issue 15, item 3).

One boot: the session's testbed install is verified once, next to an older build directory of the same spec
whose recorded inventory is made up (so every kind of change shows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_verify import fresh_copy, key_of, session_testbed

from factory.core.record import BuildDir
from factory.stages.verify import inventory, pkgdiff, sbom
from factory.stages.verify.verify import verify
from factory.vm import guest

pytestmark = pytest.mark.vm


def _previous_build(current: BuildDir) -> BuildDir:
    """An older verified build of the same spec: an older bash and kernel, a package since removed."""
    older = BuildDir.create(current.path.parent.parent, current.spec_name, "00000000T000000Z-0000")
    packages = (
        inventory.Package("bash", "amd64", None, "5.1", "2"),
        inventory.Package("gone-tool", "amd64", None, "1.0", "1"),
    )
    inventory.save(inventory.Inventory("dpkg", "debian", "12", "5.10.0-0-cloud-amd64", packages), older.path)
    older.record_stage("verify", "ok", result={"passed": True})
    return older


def test_verify_records_the_inventory_and_the_diff(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = fresh_copy(session_testbed(tmp_path_factory), tmp_path)
    older = _previous_build(build.build)
    # A shared host under load (TCG guests of several builds at once): SSH may come minutes after the
    # login prompt. This test is about the inventory, not about how fast sshd answers.
    spec = build.spec.model_copy(update={"timeouts": build.spec.timeouts.model_copy(update={"ssh": 600})})
    monkeypatch.setattr(guest, "LOGIN_GRACE_S", 600.0)
    result = verify(spec, build.disk, build.build, key=key_of(build.build))
    assert result.passed, result.junit.with_name("pytest.log").read_text()
    print(f"inventory: {result.packages} packages, {result.inventory_s:.2f} s; suite {result.suite_s:.0f} s")
    assert result.inventory == build.build.path / inventory.INVENTORY
    recorded = inventory.load(build.build.path)
    assert recorded.format == "dpkg" and recorded.distro_id == "debian"
    names = {p.name for p in recorded.packages}
    assert {"openssh-server", "bash", "sysvinit-core"} <= names
    assert result.packages == len(recorded.packages) > 50
    assert recorded.kernel.endswith("-amd64"), recorded.kernel
    # Licenses from each package's DEP-5 copyright file (the testbed keeps them, docs are dropped).
    by_name = {p.name: p for p in recorded.packages}
    assert "GPL-3+" in by_name["bash"].licenses, by_name["bash"].licenses
    assert sum(1 for p in recorded.packages if p.licenses) > len(recorded.packages) // 2

    diff = result.package_diff
    assert diff is not None and diff.before == older.build_id
    assert [c.name for c in diff.upgraded] == ["bash"] and not diff.downgraded
    assert [e.name for e in diff.removed] == ["gone-tool"]
    assert len(diff.added) == result.packages - 1
    # The testbed's kernel is put in by its installer, not as a package: the change shows by uname -r.
    assert diff.kernel == pkgdiff.KernelChange("5.10.0-0-cloud-amd64", recorded.kernel, ())

    text = sbom.document(
        recorded, name=build.spec.name, version=build.build.build_id, image_sha256=result.image_sha256
    )
    assert sbom.validate(text) is None
    doc = json.loads(text)
    assert len(doc["components"]) == result.packages
    bash = next(c for c in doc["components"] if c["name"] == "bash")
    assert bash.get("licenses"), bash
    assert doc["metadata"]["component"]["hashes"][0]["content"] == result.image_sha256
