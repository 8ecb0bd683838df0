"""vSphere tags through the vAPI REST endpoint (/rest/com/vmware/cis/...), which pyvmomi does not speak.

One category per fact (factory-spec, factory-build-id, factory-image-sha256), the value as the tag name:
vCenter searches and policies select templates by these. A vCenter without the endpoint (old ones, a bare
simulator) answers 404: tagging is then skipped with a warning; the same facts are in the annotation.
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests

from factory.errors import VsphereError
from factory.targets.vsphere.connection import Credentials, Endpoint

REST = "/rest/com/vmware/cis"
CATEGORIES = ("factory-spec", "factory-build-id", "factory-image-sha256")


class Unavailable(Exception):
    """The server has no vAPI tagging endpoint."""


class Tagging:
    def __init__(self, ep: Endpoint, creds: Credentials, *, verify_tls: bool, timeout: float = 60) -> None:
        self.base = ep.base + REST
        self.http = requests.Session()
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = verify_tls
        self.timeout = timeout
        try:
            resp = self.http.post(
                f"{self.base}/session",
                auth=(creds.username, creds.password),
                timeout=timeout,
                verify=verify_tls,
            )
        except requests.RequestException as exc:
            raise VsphereError(f"vSphere tagging endpoint {self.base}: {exc}") from None
        if resp.status_code == 404:
            raise Unavailable(self.base)
        if resp.status_code == 401:
            raise VsphereError(f"vSphere tagging endpoint: login as {creds.username!r} refused")
        self._check(resp, "login")
        self.http.headers["vmware-api-session-id"] = str(resp.json()["value"])

    def close(self) -> None:
        with contextlib.suppress(requests.RequestException):
            self.http.delete(f"{self.base}/session", timeout=self.timeout, verify=self.verify)
        self.http.close()

    def _check(self, resp: requests.Response, what: str) -> Any:
        if resp.status_code >= 300:
            raise VsphereError(f"vSphere tagging: {what} answered HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.json().get("value") if resp.content else None

    def _get(self, path: str) -> Any:
        return self._check(
            self.http.get(self.base + path, timeout=self.timeout, verify=self.verify), f"GET {path}"
        )

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._check(
            self.http.post(self.base + path, json=body, timeout=self.timeout, verify=self.verify),
            f"POST {path}",
        )

    def category(self, name: str) -> str:
        for cid in self._get("/tagging/category") or []:
            if self._get(f"/tagging/category/id:{cid}")["name"] == name:
                return str(cid)
        spec = {"name": name, "description": "image-factory", "cardinality": "SINGLE", "associable_types": []}
        return str(self._post("/tagging/category", {"create_spec": spec}))

    def tag(self, category_id: str, name: str) -> str:
        for tid in self._get(f"/tagging/tag/id:{category_id}?~action=list-tags-for-category") or []:
            if self._get(f"/tagging/tag/id:{tid}")["name"] == name:
                return str(tid)
        spec = {"name": name, "description": "image-factory", "category_id": category_id}
        return str(self._post("/tagging/tag", {"create_spec": spec}))

    def attach(self, facts: dict[str, str], vm_moref: str) -> dict[str, str]:
        """Attach category=value tags to the VM; returns category -> tag id."""
        obj = {"object_id": {"type": "VirtualMachine", "id": vm_moref}}
        attached = {}
        for category, value in facts.items():
            tid = self.tag(self.category(category), value)
            self._post(f"/tagging/tag-association/id:{tid}?~action=attach", obj)
            attached[category] = tid
        return attached

    def attached(self, vm_moref: str) -> dict[str, str]:
        """category name -> tag name of every tag on the VM."""
        obj = {"object_id": {"type": "VirtualMachine", "id": vm_moref}}
        out = {}
        for tid in self._post("/tagging/tag-association?~action=list-attached-tags", obj) or []:
            tag = self._get(f"/tagging/tag/id:{tid}")
            out[self._get(f"/tagging/category/id:{tag['category_id']}")["name"]] = tag["name"]
        return out
