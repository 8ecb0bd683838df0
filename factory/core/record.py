"""The build directory and its build record (record.json): every stage's result, inputs and timing.

    build/<spec>/<build-id>/
        record.json        this record (written atomically after every stage)
        build-key          ephemeral SSH private key, mode 0600 (deleted after sealing)
        console.log        serial transcript of the install
        anaconda.log       installer log from the virtio-serial port
        disk.qcow2         the installed disk (only once the install succeeded)
        ...

A stage whose inputs hash is unchanged and whose status is "ok" can be skipped by a later run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory import __version__

# "compliance" runs only for a spec with a compliance section (factory.stages.compliance.compliance).
STAGES = ("validate", "media", "install", "verify", "seal", "compliance", "export", "promote")


def new_build_id() -> str:
    """Sortable, unique enough for one host: UTC time plus 4 random hex digits."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(2).hex()}"


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temp file in the same folder, fsync, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def to_jsonable(value: Any) -> Any:
    """Dataclasses, Paths and enums into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # StrEnum
        return value.value
    return value


@dataclasses.dataclass
class BuildDir:
    """One build of one spec; `record` is the parsed record.json."""

    path: Path
    spec_name: str
    build_id: str
    record: dict[str, Any]

    @classmethod
    def create(cls, root: Path, spec_name: str, build_id: str | None = None) -> BuildDir:
        build_id = build_id or new_build_id()
        # Absolute: stages hand these paths to programs that run in other directories (pytest, qemu).
        path = root.absolute() / spec_name / build_id
        path.mkdir(parents=True, exist_ok=False)
        rec: dict[str, Any] = {
            "spec": spec_name,
            "build_id": build_id,
            "factory_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "stages": {},
        }
        bd = cls(path=path, spec_name=spec_name, build_id=build_id, record=rec)
        bd.save()
        return bd

    @classmethod
    def open(cls, path: Path) -> BuildDir:
        from factory.errors import InputError

        try:
            rec = json.loads((path / "record.json").read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: not a build directory (no record.json)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}/record.json: unreadable build record: {exc}") from None
        return cls(path=path.absolute(), spec_name=rec["spec"], build_id=rec["build_id"], record=rec)

    @property
    def record_path(self) -> Path:
        return self.path / "record.json"

    def save(self) -> None:
        atomic_write_text(self.record_path, json.dumps(self.record, indent=2, sort_keys=True) + "\n")

    def set(self, key: str, value: Any) -> None:
        """Set a top-level record field (e.g. tool versions, input hashes) and save."""
        self.record[key] = to_jsonable(value)
        self.save()

    def stage(self, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.record["stages"].get(name)
        return result

    def stage_ok(self, name: str, inputs: str | None = None) -> bool:
        st = self.stage(name)
        return bool(st and st.get("status") == "ok" and (inputs is None or st.get("inputs") == inputs))

    def record_stage(
        self,
        name: str,
        status: str,
        *,
        result: Any = None,
        inputs: str | None = None,
        started: float | None = None,
        error: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {"status": status}
        if started is not None:
            entry["duration_s"] = round(time.monotonic() - started, 3)
        if inputs is not None:
            entry["inputs"] = inputs
        if result is not None:
            entry["result"] = to_jsonable(result)
        if error is not None:
            entry["error"] = error
        self.record["stages"][name] = entry
        self.save()

    @contextlib.contextmanager
    def stage_run(self, name: str, inputs: str | None = None) -> Iterator[dict[str, Any]]:
        """Time a stage; on exception record it as failed (with the one-line error) and re-raise.

        The body puts its result into the yielded dict under "result".
        """
        holder: dict[str, Any] = {}
        started = time.monotonic()
        self.record["stages"][name] = {"status": "running"}
        self.save()
        try:
            yield holder
        except BaseException as exc:
            self.record_stage(
                name, "failed", inputs=inputs, started=started, error=str(exc) or type(exc).__name__
            )
            raise
        self.record_stage(name, "ok", result=holder.get("result"), inputs=inputs, started=started)
