"""The build directory and its build record (record.json): every stage's result, inputs and timing.

    build/<spec>/<build-id>/
        record.json        this record (written atomically after every stage)
        build-key          ephemeral SSH private key, mode 0600 (deleted after sealing)
        console.log        serial transcript of the install
        anaconda.log       installer log from the virtio-serial port
        ks-requests.log    the kickstart server's request log (paths only)
        disk.qcow2         the installed disk (only once the install succeeded)
        verify/            the verify boot: transcript, JUnit, generalised overlay for seal
        seal/              the seal boot's transcript
        sealed.qcow2       the sealed image (what is exported and published)
        compliance/        the OpenSCAP results
        export/            the exported formats and manifest.json
        targets/           one manifest per publishing target
        factory.log        library tracebacks and debug lines (never on the terminal)

Every one of those names is spelled here only: stages ask the BuildDir for their paths.

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
import types
import typing
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

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


T = TypeVar("T")


def from_jsonable(kind: type[T], value: Any) -> T:
    """The inverse of to_jsonable for a dataclass type: rebuild a stage's typed result from the record.

    Follows the field annotations (nested dataclasses, Path, enums, tuples, lists, dicts, optionals);
    a field missing from an older record takes its default."""
    return typing.cast(T, _convert(kind, value))


def _convert(kind: Any, value: Any) -> Any:
    if value is None or kind is Any:
        return value
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _convert(option, value)
            except (TypeError, ValueError, KeyError):
                continue
        return value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        if not isinstance(value, dict):
            raise TypeError(f"{kind.__name__}: expected an object, got {type(value).__name__}")
        known = {f.name: f for f in dataclasses.fields(kind)}
        fields = {name: _convert(hints[name], value[name]) for name in known if name in value}
        return kind(**fields)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_convert(args[0], v) for v in value]
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if kind is Path:
        return Path(value)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    if kind is float and isinstance(value, int):
        return float(value)
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

    @staticmethod
    def is_build(path: Path) -> bool:
        """Whether `path` holds a build (its record), without reading it."""
        return (path / "record.json").is_file()

    # The layout, in one place (see the module docstring).
    @property
    def disk(self) -> Path:
        """The installed disk; it exists only once the install succeeded."""
        return self.path / "disk.qcow2"

    @property
    def disk_part(self) -> Path:
        """The disk while the install writes it: renamed to `disk` only on success."""
        return self.path / ".disk.qcow2.part"

    @property
    def boot_dir(self) -> Path:
        """Kernel, initrd and (PXE) served trees of the install; removed after it."""
        return self.path / ".boot"

    @property
    def key(self) -> Path:
        return self.path / "build-key"

    @property
    def key_pub(self) -> Path:
        return self.path / "build-key.pub"

    @property
    def console_log(self) -> Path:
        return self.path / "console.log"

    @property
    def console_socket(self) -> Path:
        """Where `factory console` attaches to a failed install kept with --keep-on-error."""
        return self.path / "console.sock"

    @property
    def anaconda_log(self) -> Path:
        return self.path / "anaconda.log"

    @property
    def ks_requests_log(self) -> Path:
        return self.path / "ks-requests.log"

    @property
    def verify_dir(self) -> Path:
        return self.path / "verify"

    @property
    def seal_dir(self) -> Path:
        return self.path / "seal"

    @property
    def sealed_image(self) -> Path:
        return self.path / "sealed.qcow2"

    @property
    def compliance_dir(self) -> Path:
        return self.path / "compliance"

    @property
    def export_dir(self) -> Path:
        return self.path / "export"

    @property
    def targets_dir(self) -> Path:
        return self.path / "targets"

    @property
    def log(self) -> Path:
        return self.path / "factory.log"

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
        key: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {"status": status}
        if started is not None:
            entry["duration_s"] = round(time.monotonic() - started, 3)
        if inputs is not None:
            entry["inputs"] = inputs
        if key is not None:
            # The stage's own inputs chained with the key of the stage before it (as osbuild's stage ids).
            entry["key"] = key
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
