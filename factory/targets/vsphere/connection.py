"""Credentials, the SOAP session, and the inventory objects the spec names (each missing one is an error
that names it and lists what exists)."""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from factory.errors import VsphereError
from factory.spec import Vsphere

log = logging.getLogger("factory.targets.vsphere")

USER_ENV = "VSPHERE_USER"
PASSWORD_ENV = "VSPHERE_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never shown, even in a traceback's locals
        return f"Credentials(username={self.username!r}, password=***)"


def credentials(cfg: Vsphere, base_dir: Path) -> Credentials:
    """From the spec's credentials_file (YAML username/password), else VSPHERE_USER / VSPHERE_PASSWORD."""
    if cfg.credentials_file is not None:
        path = cfg.credentials_file if cfg.credentials_file.is_absolute() else base_dir / cfg.credentials_file
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise VsphereError(
                f"vsphere.credentials_file {path}: cannot read it ({type(exc).__name__})"
            ) from None
        if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
            raise VsphereError(f"vsphere.credentials_file {path}: needs `username:` and `password:`")
        return Credentials(str(data["username"]), str(data["password"]))
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if not user or not password:
        raise VsphereError(
            f"vSphere {cfg.url}: no credentials: set {USER_ENV} and {PASSWORD_ENV} "
            "or name a vsphere.credentials_file in the spec"
        )
    return Credentials(user, password)


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def endpoint(cfg: Vsphere) -> Endpoint:
    url = urllib.parse.urlsplit(cfg.url)
    scheme = url.scheme
    port = url.port or (443 if scheme == "https" else 80)
    return Endpoint(scheme, url.hostname or "", port)


def tls_warning(cfg: Vsphere) -> str | None:
    if endpoint(cfg).scheme == "http":
        return f"vSphere {cfg.url}: plain HTTP, nothing is encrypted (only for a local simulator)"
    if cfg.insecure:
        return f"vSphere {cfg.url}: TLS certificate NOT verified (vsphere.insecure: true)"
    return None


@contextlib.contextmanager
def connect(cfg: Vsphere, creds: Credentials) -> Iterator[Any]:
    """A logged-in ServiceInstance; wrong credentials and unreachable hosts are one-line errors."""
    ep = endpoint(cfg)
    # An explicit verifying context: without one, pyvmomi's connection accepts any certificate.
    context = None if cfg.insecure or ep.scheme == "http" else ssl.create_default_context()
    try:
        si = SmartConnect(
            host=ep.host,
            port=ep.port,
            user=creds.username,
            pwd=creds.password,
            protocol=ep.scheme,
            disableSslCertValidation=cfg.insecure,
            sslContext=context,
            connectionPoolTimeout=60,
        )
    except vim.fault.InvalidLogin:
        raise VsphereError(
            f"vSphere {cfg.url}: login as {creds.username!r} refused (wrong user name or password): "
            f"fix {USER_ENV}/{PASSWORD_ENV} or the spec's credentials_file"
        ) from None
    except ssl.SSLError as exc:
        raise VsphereError(
            f"vSphere {cfg.url}: TLS verification failed ({exc.reason}): install its CA certificate, "
            "or set vsphere.insecure: true to skip the check"
        ) from None
    except (OSError, vim.fault.HostConnectFault) as exc:
        raise VsphereError(f"vSphere {cfg.url}: cannot connect ({exc}): check vsphere.url") from None
    try:
        yield si
    finally:
        with contextlib.suppress(Exception):
            Disconnect(si)


@dataclass(frozen=True)
class Placement:
    datacenter: Any
    pool: Any
    datastore: Any
    folder: Any
    network: Any


def _names(objs: Any) -> str:
    return ", ".join(sorted(str(o.name) for o in objs)) or "none"


def placement(si: Any, cfg: Vsphere) -> Placement:
    """Every inventory object the spec names, found before anything is uploaded."""
    content = si.RetrieveContent()
    dcs = [e for e in content.rootFolder.childEntity if isinstance(e, vim.Datacenter)]
    dc = next((d for d in dcs if d.name == cfg.datacenter), None)
    if dc is None:
        raise VsphereError(
            f"vSphere {cfg.url}: datacenter {cfg.datacenter!r} not found (have: {_names(dcs)}): "
            "fix vsphere.datacenter"
        )
    search = content.searchIndex
    if cfg.cluster is not None:
        cluster = search.FindByInventoryPath(f"{dc.name}/host/{cfg.cluster}")
        if not isinstance(cluster, vim.ComputeResource):
            hosts = [c for c in dc.hostFolder.childEntity if isinstance(c, vim.ComputeResource)]
            raise VsphereError(
                f"vSphere datacenter {dc.name}: cluster {cfg.cluster!r} not found (have: {_names(hosts)}): "
                "fix vsphere.cluster"
            )
        pool = cluster.resourcePool
    else:
        pool = search.FindByInventoryPath(f"{dc.name}/host/{cfg.resource_pool}")
        if not isinstance(pool, vim.ResourcePool):
            raise VsphereError(
                f"vSphere datacenter {dc.name}: resource pool {cfg.resource_pool!r} not found "
                "(give its path under the datacenter's hosts, e.g. CLUSTER/Resources/POOL): "
                "fix vsphere.resource_pool"
            )
    datastore = next((d for d in dc.datastore if d.name == cfg.datastore), None)
    if datastore is None:
        raise VsphereError(
            f"vSphere datacenter {dc.name}: datastore {cfg.datastore!r} not found "
            f"(have: {_names(dc.datastore)}): fix vsphere.datastore"
        )
    network = next((n for n in dc.network if n.name == cfg.network), None)
    if network is None:
        raise VsphereError(
            f"vSphere datacenter {dc.name}: network {cfg.network!r} not found "
            f"(have: {_names(dc.network)}): fix vsphere.network"
        )
    folder = dc.vmFolder
    if cfg.folder.strip("/"):
        folder = search.FindByInventoryPath(f"{dc.name}/vm/{cfg.folder.strip('/')}")
        if not isinstance(folder, vim.Folder):
            subs = [f for f in dc.vmFolder.childEntity if isinstance(f, vim.Folder)]
            raise VsphereError(
                f"vSphere datacenter {dc.name}: VM folder {cfg.folder!r} not found "
                f"(top-level folders: {_names(subs)}): create it or fix vsphere.folder"
            )
    return Placement(dc, pool, datastore, folder, network)


def wait_task(task: Any, what: str, timeout: float = 600) -> Any:
    """Wait for a vSphere task; its error becomes a VsphereError naming `what`."""
    deadline = time.monotonic() + timeout
    while task.info.state in (vim.TaskInfo.State.queued, vim.TaskInfo.State.running):
        if time.monotonic() > deadline:
            raise VsphereError(f"vSphere: {what} did not finish within {timeout:.0f} s")
        time.sleep(0.2)
    if task.info.state != vim.TaskInfo.State.success:
        err = task.info.error
        raise VsphereError(f"vSphere: {what} failed: {getattr(err, 'msg', None) or err}")
    return task.info.result
