"""A publishing manifest: a JSON file of what a run made and in what state, saved after every change.

An interrupted or failed run leaves a true list of what exists; a re-run reads it back to finish the job
and retirement reads it to remove leftovers. The AWS promotion (promotion.json) and every other target
(targets/<key>.json) keep theirs in this one shape.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from factory.core.record import atomic_write_text, to_jsonable
from factory.errors import InputError


class JsonManifest:
    """Every setter saves at once (atomically: never a half-written manifest)."""

    # Its name in error messages.
    what = "manifest"

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def read(cls, path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
        """The manifest's data, or `fresh` when there is none yet; unreadable is an input error."""
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return dict(fresh)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: unreadable {cls.what}: {exc}") from None
        return data

    def save(self) -> None:
        self.data["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        atomic_write_text(self.path, json.dumps(to_jsonable(self.data), indent=2, sort_keys=True) + "\n")

    @property
    def state(self) -> str:
        return str(self.data.get("state", "new"))

    def set_state(self, state: str, error: str | None = None) -> None:
        self.data["state"] = state
        if error is None:
            self.data.pop("error", None)
        else:
            self.data["error"] = error
        self.save()
