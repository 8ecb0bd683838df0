"""The kickstart HTTP server: 127.0.0.1 only, a free port, one unguessable path, everything else 404.

For a network install (boot.mode pxe) it also serves the install tree (the medium's files, read-only,
never outside it) under the same unguessable prefix: `<prefix>/repo/`, folders as one link per line.

The guest reaches it through QEMU user networking as 10.0.2.2:<port>. Each request is logged (method,
path, status, bytes) to the build directory; the body never is — it holds password hashes.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO

# How the guest sees the host under QEMU user networking (slirp's gateway).
GUEST_HOST = "10.0.2.2"


@dataclass(frozen=True)
class Request:
    at: float  # time.monotonic()
    client: str
    method: str
    path: str
    status: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    # Set by KickstartServer before serve_forever starts.
    body: bytes
    secret_path: str
    # boot.mode pxe: the install tree served under repo_prefix (None: only the kickstart).
    repo_root: Path | None
    repo_prefix: str
    log: IO[str]
    requests: list[Request]
    fetched: threading.Event
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "image-factory-ks"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        srv = self.server
        ok = self.path == srv.secret_path
        repo_body = self._repo_file() if not ok else None
        status = 200 if ok or repo_body is not None else 404
        body = srv.body if ok else repo_body if repo_body is not None else b"not found\n"
        with srv.lock:
            req = Request(time.monotonic(), self.client_address[0], self.command, self.path, status)
            srv.requests.append(req)
            # Path, status and size only: never the body.
            srv.log.write(
                f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {req.client} {req.method} {req.path} {status} "
                f"{len(body) if send_body else 0}\n"
            )
            srv.log.flush()
        if ok and send_body:
            srv.fetched.set()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _repo_file(self) -> bytes | None:
        """A file (or a folder's listing, one link a line) of the install tree, or None (a 404)."""
        srv = self.server
        if srv.repo_root is None or not self.path.startswith(srv.repo_prefix):
            return None
        rel = urllib.parse.unquote(self.path[len(srv.repo_prefix) :].split("?", 1)[0])
        root = srv.repo_root.resolve()
        target = (root / rel).resolve()
        if target != root and root not in target.parents:
            return None  # ../ out of the tree
        if target.is_dir():
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in target.iterdir())
            return "".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a>\n' for n in names).encode()
        if target.is_file():
            return target.read_bytes()
        return None

    def log_message(self, format: str, *args: object) -> None:
        pass  # our own request log replaces the stderr chatter


class KickstartServer:
    """`with KickstartServer(text, log_path) as ks:` serves `text` at `ks.path` on 127.0.0.1:`ks.port`."""

    def __init__(
        self, text: str, log_path: Path, *, host: str = "127.0.0.1", repo: Path | None = None
    ) -> None:
        # 128 bits of randomness: nobody else on the host can guess the kickstart's URL.
        token = secrets.token_urlsafe(16)
        self.path = f"/{token}/ks.cfg"
        # boot.mode pxe: the install tree under the same secret prefix (inst.repo=...).
        self.repo_path = f"/{token}/repo/"
        self._log = log_path.open("a", encoding="utf-8")
        try:
            self._srv = _Server((host, 0), _Handler)
        except BaseException:
            self._log.close()
            raise
        self._srv.body = text.encode()
        self._srv.secret_path = self.path
        self._srv.repo_root = repo
        self._srv.repo_prefix = self.repo_path
        self._srv.log = self._log
        self._srv.requests = []
        self._srv.fetched = threading.Event()
        self._srv.lock = threading.Lock()
        self._thread = threading.Thread(target=self._srv.serve_forever, name="ks-http", daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._srv.server_address[0])

    @property
    def port(self) -> int:
        return int(self._srv.server_address[1])

    def guest_url(self, path: str | None = None) -> str:
        """The URL the guest uses (through QEMU user networking)."""
        return f"http://{GUEST_HOST}:{self.port}{path if path is not None else self.path}"

    @property
    def fetched(self) -> bool:
        return self._srv.fetched.is_set()

    def requests(self) -> list[Request]:
        with self._srv.lock:
            return list(self._srv.requests)

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)
        self._log.close()

    def __enter__(self) -> KickstartServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
