"""The media stage against a real HTTP server on 127.0.0.1 and real ISOs built with xorriso."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from el7iso import LABEL, make_el7_iso

from factory.core import digest
from factory.errors import InputError, MediaError
from factory.spec import Spec
from factory.stages.media import media


@dataclass
class Served:
    """What the test server serves and how; `requests` records (path, Range header) per GET."""

    data: bytes = b""
    # "ok", "cut" (send half of the body, then close), "norange" (ignore Range: always 200 + whole body)
    mode: str = "ok"
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        s = self.served
        with s.lock:
            s.requests.append((self.path, self.headers.get("Range")))
        if self.path != "/el7.iso":
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m and s.mode != "norange":
            start = int(m.group(1))
            if start >= len(s.data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(s.data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(s.data) - 1}/{len(s.data)}")
        else:
            self.send_response(200)
        body = s.data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if s.mode == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_el7_iso(tmp_path_factory.mktemp("el7"))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("FACTORY_CACHE", str(path))
    monkeypatch.setattr(media, "RETRY_DELAY_S", 0.0)
    return path


@pytest.fixture
def server(iso: Path) -> Iterator[tuple[str, Served]]:
    served = Served(data=iso.read_bytes())
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def make_spec(tmp_path: Path, **media_fields: Any) -> Spec:
    media_fields.setdefault("volume_label", LABEL)
    return Spec.model_validate(
        {
            "name": "t",
            "os": "centos",
            "media": media_fields,
            "kickstart": {"path": "t.ks"},
            "source": tmp_path / "spec.yaml",
        }
    )


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "iso").glob("*") if not p.name.endswith(".lock"))


# --- downloads ---------------------------------------------------------------------------------------------


def test_download_verifies_and_caches(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    url, served = server
    sha = digest.sha256_file(iso)
    result = media.prepare(make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha))
    assert result == media.MediaResult(
        iso=cache / "iso" / f"{sha}.iso", sha256=sha, volume_label=LABEL, source=f"{url}/el7.iso"
    )
    assert digest.sha256_file(result.iso) == sha
    assert cache_files(cache) == [f"{sha}.iso"]
    # A second build reuses the cache without asking the server again.
    media.prepare(make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha))
    assert served.requests == [("/el7.iso", None)]


def test_download_resumes_a_partial_file(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    url, served = server
    sha = digest.sha256_file(iso)
    (cache / "iso").mkdir(parents=True)
    (cache / "iso" / f"{sha}.iso.part").write_bytes(served.data[:100_000])
    result = media.prepare(make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha))
    assert served.requests == [("/el7.iso", "bytes=100000-")]
    assert digest.sha256_file(result.iso) == sha
    assert cache_files(cache) == [f"{sha}.iso"]


def test_server_ignoring_range_restarts_from_zero(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    url, served = server
    served.mode = "norange"
    sha = digest.sha256_file(iso)
    (cache / "iso").mkdir(parents=True)
    (cache / "iso" / f"{sha}.iso.part").write_bytes(b"garbage that must not be kept" * 100)
    result = media.prepare(make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha))
    assert digest.sha256_file(result.iso) == sha


def test_checksum_mismatch_leaves_no_file(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    url, _ = server
    wrong = "0" * 64
    with pytest.raises(
        MediaError, match=rf"sha256 mismatch: expected {wrong}, got {digest.sha256_file(iso)}"
    ):
        media.prepare(make_spec(tmp_path, url=f"{url}/el7.iso", sha256=wrong))
    assert cache_files(cache) == []


def test_interrupted_download_keeps_only_a_part_that_is_not_used(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    url, served = server
    served.mode = "cut"
    sha = digest.sha256_file(iso)
    spec = make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha)
    with pytest.raises(MediaError, match=rf"after {media.ATTEMPTS} attempts: .*kept in .*\.part"):
        media.prepare(spec)
    assert cache_files(cache) == [f"{sha}.iso.part"]
    assert len(served.requests) == media.ATTEMPTS
    # Every retry resumed from where the previous attempt stopped.
    assert served.requests[0][1] is None
    assert all(rng is not None and rng.startswith("bytes=") for _, rng in served.requests[1:])
    part_size = (cache / "iso" / f"{sha}.iso.part").stat().st_size
    assert 0 < part_size < len(served.data)
    # Next build: the server works again; the .part is resumed, never taken as the ISO.
    served.mode = "ok"
    served.requests.clear()
    result = media.prepare(spec)
    assert served.requests == [("/el7.iso", f"bytes={part_size}-")]
    assert digest.sha256_file(result.iso) == sha


def test_http_404_is_not_retried(tmp_path: Path, server: tuple[str, Served], cache: Path) -> None:
    url, served = server
    with pytest.raises(MediaError, match=r"cannot download .*/missing.iso: HTTP 404"):
        media.prepare(make_spec(tmp_path, url=f"{url}/missing.iso", sha256="1" * 64))
    assert len(served.requests) == 1
    assert cache_files(cache) == []


def test_download_reports_its_bytes_as_media_progress(
    tmp_path: Path, iso: Path, server: tuple[str, Served], cache: Path
) -> None:
    from factory.core.events import Event, StageProgress

    url, _ = server
    seen: list[Event] = []
    media.prepare(
        make_spec(tmp_path, url=f"{url}/el7.iso", sha256=digest.sha256_file(iso)), progress=seen.append
    )
    size = iso.stat().st_size
    assert seen[0] == StageProgress("t", "media", "download el7.iso", 0, size)
    assert seen[-1] == StageProgress("t", "media", "download el7.iso", size, size)
    done = [e.done for e in seen if isinstance(e, StageProgress)]
    assert done == sorted(done)


def test_unreachable_url(tmp_path: Path, cache: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MediaError, match=r"cannot download .* after \d+ attempts: .*refused"):
        media.prepare(make_spec(tmp_path, url=f"http://127.0.0.1:{port}/x.iso", sha256="1" * 64))
    assert cache_files(cache) == []


def test_concurrent_builds_download_once(tmp_path: Path, iso: Path, server: tuple[str, Served]) -> None:
    url, served = server
    sha = digest.sha256_file(iso)
    spec = make_spec(tmp_path, url=f"{url}/el7.iso", sha256=sha)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: media.prepare(spec), range(3)))
    assert len({r.iso for r in results}) == 1
    assert digest.sha256_file(results[0].iso) == sha
    assert len(served.requests) == 1


# --- local paths -------------------------------------------------------------------------------------------


def test_local_path_good(tmp_path: Path, iso: Path) -> None:
    sha = digest.sha256_file(iso)
    result = media.prepare(make_spec(tmp_path, path=str(iso), sha256=sha))
    assert result == media.MediaResult(iso=iso, sha256=sha, volume_label=LABEL, source=str(iso))


def test_file_url_is_a_local_path(tmp_path: Path, iso: Path) -> None:
    sha = digest.sha256_file(iso)
    assert media.prepare(make_spec(tmp_path, url=iso.as_uri(), sha256=sha)).iso == iso


def test_local_path_hash_is_cached_by_size_and_mtime(
    tmp_path: Path, iso: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy.iso"
    copy.write_bytes(iso.read_bytes())
    sha = digest.sha256_file(copy)
    hashed: list[Path] = []
    real = digest.sha256_file
    monkeypatch.setattr(media.digest, "sha256_file", lambda p: hashed.append(p) or real(p))
    spec = make_spec(tmp_path, path=str(copy), sha256=sha)
    media.prepare(spec)
    media.prepare(spec)
    assert hashed == [copy]
    # Rewritten in place (new mtime): hashed again, and the change is caught.
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="sha256 mismatch"):
        media.prepare(spec)
    assert hashed == [copy, copy]


@pytest.mark.parametrize(
    ("fields", "env", "error", "message"),
    [
        pytest.param(
            {"path": "/nonexistent/el7.iso", "sha256": "1" * 64}, {}, MediaError, "install ISO not found",
            id="path-missing",
        ),
        pytest.param(
            {"path": "ISO", "sha256": "1" * 64}, {}, MediaError, "sha256 mismatch", id="path-bad-sha",
        ),
        pytest.param(
            {"path": "ISO", "sha256_env": "T_ISO_SHA"}, {}, InputError, "T_ISO_SHA must hold",
            id="sha256-env-unset",
        ),
        pytest.param(
            {"path": "ISO", "sha256_env": "T_ISO_SHA"}, {"T_ISO_SHA": "abc"}, InputError, "64 hex digits",
            id="sha256-env-not-a-hash",
        ),
        pytest.param(
            {"path_env": "T_ISO", "sha256": "SHA"}, {}, InputError, "T_ISO is not set", id="path-env-unset"
        ),
        pytest.param(
            {"path": "ISO", "sha256": "SHA", "volume_label": "OL-7.2 Server.x86_64"}, {}, MediaError,
            "volume label is 'CentOS 7 x86_64'", id="volume-label-mismatch",
        ),
    ],
)  # fmt: skip
def test_local_path_bad_inputs(  # noqa: PLR0917 (pytest passes fixtures and parameters positionally)
    tmp_path: Path,
    iso: Path,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, str],
    env: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    monkeypatch.delenv("T_ISO", raising=False)
    monkeypatch.delenv("T_ISO_SHA", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sha = digest.sha256_file(iso)
    fields = {k: {"ISO": str(iso), "SHA": sha}.get(v, v) for k, v in fields.items()}
    with pytest.raises(error, match=message):
        media.prepare(make_spec(tmp_path, **fields))


def test_path_env_and_sha256_env(tmp_path: Path, iso: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ISO", str(iso))
    monkeypatch.setenv("T_ISO_SHA", digest.sha256_file(iso).upper())
    result = media.prepare(make_spec(tmp_path, path_env="T_ISO", sha256_env="T_ISO_SHA"))
    assert (result.iso, result.sha256) == (iso, digest.sha256_file(iso))
