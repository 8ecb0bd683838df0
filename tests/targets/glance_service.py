"""A real OpenStack Glance for the tests: glance from PyPI in its own virtual environment (it is not a
dependency of the project), sqlite database, file store, no Keystone, served by waitress.

The venv is made once per machine under ~/.cache/image-factory/glance-venv-<version> (about 40 s of pip);
each server gets its own config, database and store folders and listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

GLANCE = "glance==33.0.0"
WAITRESS = "waitress==3.0.2"
READY_TIMEOUT_S = 120


def venv(cache: Path) -> Path:
    folder = cache / f"glance-venv-{GLANCE.split('==')[1]}"
    done = folder / ".installed"
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / "glance-venv.lock")):
        if not done.is_file():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True, timeout=300)
            subprocess.run(
                [str(folder / "bin" / "pip"), "install", "-q", GLANCE, WAITRESS], check=True, timeout=1800
            )
            done.write_text(f"{GLANCE} {WAITRESS}\n")
    return folder


@dataclass
class Glance:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def config(env: Path, work: Path, extra: str = "", flavor: str = "") -> Path:
    conf = work / "conf"
    for sub in ("conf", "images", "staging", "tasks"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (conf / "glance-api.conf").write_text(
        f"""[DEFAULT]
enabled_backends = local:file
[database]
connection = sqlite:///{work}/glance.sqlite
[paste_deploy]
# Empty flavor: no Keystone, every request is the unauthenticated (admin) context. `keystone` puts
# keystonemiddleware in front, which refuses a request without a valid token (401).
flavor = {flavor}
config_file = {env}/etc/glance/glance-api-paste.ini
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = {work}/images
[os_glance_staging_store]
filesystem_store_datadir = {work}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {work}/tasks
[oslo_policy]
# The legacy policy defaults: with no Keystone there are no roles, and the secure-RBAC defaults
# would refuse every request (403).
enforce_new_defaults = false
enforce_scope = false
{extra}
"""
    )
    return conf


def start(cache: Path, work: Path, extra_conf: str = "", *, keystone: bool = False) -> Glance:
    """Start a Glance; with `keystone`, behind keystonemiddleware (pointed at no Keystone: every request
    without a valid token gets 401, which is what a cloud answers to wrong credentials)."""
    env = venv(cache)
    if keystone:
        extra_conf += (
            "[keystone_authtoken]\nwww_authenticate_uri = http://127.0.0.1:9/identity\n"
            "auth_url = http://127.0.0.1:9/identity\nauth_type = password\n"
        )
    conf = config(env, work, extra_conf, "keystone" if keystone else "")
    log = work / "glance.log"
    subprocess.run(
        [str(env / "bin" / "glance-manage"), "--config-file", str(conf / "glance-api.conf"), "db_sync"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(env / "bin" / "waitress-serve"), "--listen=127.0.0.1:0", "glance.wsgi.api:application"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OS_GLANCE_CONFIG_DIR": str(conf)},
            cwd=work,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: OSError | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Glance exited with {proc.returncode}; see {log}")
        match = re.search(r"Serving on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if match:
            url = match.group(1)
            try:
                with urllib.request.urlopen(f"{url}/v2/images", timeout=5) as resp:
                    if resp.status == 200:
                        return Glance(url, proc, log)
            except urllib.error.HTTPError as exc:
                if keystone and exc.code == 401:
                    return Glance(url, proc, log)
                last = exc
            except OSError as exc:
                last = exc
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"Glance did not answer /v2/images within {READY_TIMEOUT_S} s ({last!r}); see {log}")
