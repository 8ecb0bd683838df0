"""govmomi's vCenter simulator for the tests and benches: built from vcsim/main.go with Debian's Go and
golang-github-vmware-govmomi-dev (see .ci/apt-packages.txt) into <cache>/vcsim/<hash of the source and
the govmomi version>, started on 127.0.0.1 at a free port with a random password."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

SOURCE = Path(__file__).parent / "vcsim" / "main.go"
GOVMOMI = "golang-github-vmware-govmomi-dev"


def _govmomi_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", GOVMOMI], check=False, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{GOVMOMI} is not installed (apt-get install golang-go {GOVMOMI})")
    return out.stdout.strip()


def build(cache: Path) -> Path:
    key = hashlib.sha256(SOURCE.read_bytes() + _govmomi_version().encode()).hexdigest()[:16]
    folder = cache / "vcsim" / key
    binary = folder / "vcsim"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not binary.is_file():
            if shutil.which("go") is None:
                raise RuntimeError("go is not installed (apt-get install golang-go)")
            work = folder / "src"
            work.mkdir(exist_ok=True)
            shutil.copy(SOURCE, work / "main.go")
            env = {
                **os.environ,
                "GOPATH": f"{folder / 'gopath'}:/usr/share/gocode",
                "GO111MODULE": "off",
                # Shared by every source version: a changed main.go rebuilds in seconds.
                "GOCACHE": str(cache / "vcsim" / "gocache"),
            }
            tmp = folder / "vcsim.tmp"
            subprocess.run(
                ["go", "build", "-o", str(tmp), "main.go"], cwd=work, env=env, check=True, timeout=900
            )
            tmp.replace(binary)
    return binary


@dataclass
class Vcsim:
    url: str  # http://127.0.0.1:PORT/sdk, no credentials in it
    username: str
    password: str
    log: Path
    proc: subprocess.Popen[str] | None = None

    def nfc_bytes(self) -> list[int]:
        """Bytes vcsim received per NFC upload, from its own log ("nfc POST ...: transferred N bytes")."""
        return [int(n) for n in re.findall(r"nfc POST \S+: transferred (\d+) bytes", self.log.read_text())]

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start(binary: Path, work: Path, *, tls: bool = False) -> Vcsim:
    log = work / "vcsim.log"
    env = {
        **os.environ,
        "VCSIM_USER": "factory",
        "VCSIM_PASSWORD": secrets.token_hex(12),
        "VCSIM_TLS": "1" if tls else "0",
    }
    with log.open("wb") as err:
        proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    assert proc.stdout is not None
    timer = threading.Timer(60, proc.kill)  # a simulator that never prints its URL must not hang the run
    timer.start()
    try:
        line = proc.stdout.readline().strip()
    finally:
        timer.cancel()
    match = re.match(r"^(https?)://([^:]+):([^@]+)@([^/]+)(/sdk)$", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"vcsim did not print its URL (got {line!r}); see {log}")
    scheme, user, password, hostport, path = match.groups()
    return Vcsim(f"{scheme}://{hostport}{path}", user, password, log, proc)
