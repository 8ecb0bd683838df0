"""Where the factory keeps things: the shared cache (ISOs, testbed, probes) and build directories."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """`$FACTORY_CACHE`, else the user's cache dir (~/.cache/image-factory)."""
    env = os.environ.get("FACTORY_CACHE")
    path = Path(env) if env else Path(platformdirs.user_cache_dir("image-factory"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_root() -> Path:
    """`$FACTORY_BUILD_DIR`, else ./build (build/<spec>/<build-id>/)."""
    return Path(os.environ.get("FACTORY_BUILD_DIR", "build"))
