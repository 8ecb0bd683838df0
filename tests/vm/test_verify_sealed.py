"""`factory verify SPEC --image SEALED --build B` on a sealed testbed: no build key left, a throw-away key
goes into the overlay only, the acceptance suite passes, the sealed image's sha256 does not change."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from fixtures_verify import fresh_copy, key_of, session_testbed

from factory.cli import main
from factory.core import digest, offline
from factory.spec import Spec, load_spec
from factory.stages.seal.seal import seal
from factory.stages.verify import access

pytestmark = pytest.mark.vm


def _patient(spec: Spec, folder: Path) -> Spec:
    """The same spec with room for a loaded host (several TCG guests at once): two boots in a row here."""
    raw = yaml.safe_load(spec.source.read_text())
    raw["timeouts"].update(ssh=600, verify=900)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "testbed.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def _access_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("factory-access-*"))


def test_sealed_image_is_verified_with_a_throwaway_key(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    installed = fresh_copy(session_testbed(tmp_path_factory), tmp_path)
    spec = _patient(installed.spec, tmp_path / "spec")
    sealed = seal(spec, installed.disk, installed.build, key=key_of(installed.build)).sealed_image
    # Sealing deleted the build key: before issue 15 verify refused this image outright.
    assert not (installed.build.path / "build-key").exists()
    before = digest.sha256_file(sealed)
    folders = _access_folders()

    status = main(["verify", str(spec.source), "--image", str(sealed), "--build", str(installed.build.path)])

    assert status == 0
    assert digest.sha256_file(sealed) == before
    installed.build.record = installed.build.open(installed.build.path).record
    rerun = installed.build.stage(access.REVERIFY_STAGE)
    assert rerun is not None and rerun["status"] == "ok", rerun
    assert rerun["result"]["passed"] is True and rerun["result"]["image_sha256"] == before
    assert rerun["result"]["summary"]["failed"] == 0
    # The gate's own verify record (bound to the installed disk) is not overwritten by this run.
    assert installed.build.stage("verify") is None
    # The overlay and the throw-away key are gone; the sealed image carries no trace of the key.
    assert not (installed.build.path / "verify" / "overlay.qcow2").exists()
    assert _access_folders() <= folders
    snap = offline.snapshot(sealed, files=["/root/.ssh/authorized_keys"])
    assert access.ACCESS_COMMENT.encode() not in (snap.contents["/root/.ssh/authorized_keys"] or b"")
