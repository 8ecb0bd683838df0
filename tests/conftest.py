"""Shared test configuration. tests/images is the acceptance suite for a *booted image*: it is only
collected when --spec or --hosts says which image and host to check (`factory verify` passes both)."""

from __future__ import annotations

from pathlib import Path

import pytest

IMAGES_DIR = Path(__file__).parent / "images"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    in_images = collection_path == IMAGES_DIR or IMAGES_DIR in collection_path.parents
    if in_images and not (config.getoption("spec", None) or config.getoption("hosts", None)):
        return True
    return None
