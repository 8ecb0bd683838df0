"""EC2's instance metadata service (IMDSv2) for the `aws` boot profile, served on 127.0.0.1.

    with MetadataServer(Ec2Instance(instance_id=..., hostname=..., public_key=..., mac=...,
                                    local_ipv4=..., region=...)) as imds:
        netdev = "user,id=n0," + imds.netdev_options()   # QEMU -netdev
        ...boot...
        assert imds.token_used() and imds.fetched("meta-data/public-keys/0/openssh-key")

Behaviour as AWS documents IMDSv2 (with tokens required, as new AMIs default to):
- `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 1..21600` answers a token; a missing or
  out-of-range TTL is 400, and a PUT carrying `X-Forwarded-For` is 403 (AWS refuses tokens through proxies).
- every GET must carry a valid, unexpired `X-aws-ec2-metadata-token`, else 401.
- unknown paths are 404, `user-data` too when the instance has none; other methods 405.
- `/`, `/<version>/` and every folder answer a listing (one name a line, folders ending in `/`),
  `public-keys/` lists `0=<key name>` as cloud-init's crawler expects, and the same tree is served under
  `latest` and each dated version cloud-init 22.4 (Debian 12) asks for: it probes 2021-03-23, 2018-09-24,
  2016-09-02 (`<version>/meta-data/instance-id`) and falls back to 2009-04-04.

How the guest gets here: cloud-init talks to http://169.254.169.254. QEMU 7.2 (libslirp 4.7) only forwards
an address *inside* the user network (`guestfwd` for 169.254.169.254 in the default 10.0.2.0/24 fails with
"Conflicting/invalid host:port in guest forwarding rule"), so the profile's user network is
169.254.169.0/24 (the guest's DHCP address becomes 169.254.169.15). Of the two `guestfwd` forms,
`-tcp:HOST:PORT` opens *one* chardev stream when QEMU starts (it fails when nothing listens yet), shared
by every guest connection, which breaks a client that opens a connection per request; `-cmd:` starts a
command per guest connection, so this module uses `cmd:python3 relay.py PORT` (`relay.py` beside this
file). `netdev_options()` returns that text.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Union

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL_S = 21600
# cloud-init 22.4's DataSourceEc2: extended_metadata_versions + min_metadata_version.
API_VERSIONS = ("2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest")
IMDS_ADDRESS = "169.254.169.254"
# The user network the profile must use so that libslirp accepts a guestfwd for IMDS_ADDRESS.
GUEST_NET = "169.254.169.0/24"
GUEST_DHCP_ADDRESS = "169.254.169.15"
RELAY = Path(__file__).with_name("relay.py")

# A metadata folder: names to leaves (text) or sub-folders.
Tree = Mapping[str, Union[str, "Tree"]]


@dataclass(frozen=True)
class Ec2Instance:
    """What one emulated instance tells the guest about itself."""

    instance_id: str
    hostname: str
    public_key: str  # one authorized_keys line
    mac: str
    local_ipv4: str = GUEST_DHCP_ADDRESS
    region: str = "us-east-1"
    user_data: bytes | None = None
    key_name: str = "factory-verify"
    ami_id: str = "ami-0f0f0f0f0f0f0f0f0"
    instance_type: str = "t3.micro"
    account_id: str = "123456789012"
    subnet_cidr: str = GUEST_NET

    @property
    def availability_zone(self) -> str:
        return f"{self.region}a"

    def identity_document(self) -> dict[str, object]:
        """dynamic/instance-identity/document, with the fields AWS puts there (unsigned: no pkcs7)."""
        return {
            "accountId": self.account_id,
            "architecture": "x86_64",
            "availabilityZone": self.availability_zone,
            "billingProducts": None,
            "devpayProductCodes": None,
            "marketplaceProductCodes": None,
            "imageId": self.ami_id,
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "kernelId": None,
            "pendingTime": "2026-01-01T00:00:00Z",
            "privateIp": self.local_ipv4,
            "ramdiskId": None,
            "region": self.region,
            "version": "2017-09-30",
        }

    def meta_data(self) -> Tree:
        mac = self.mac.lower()
        interface: dict[str, str] = {
            "device-number": "0",
            "interface-id": "eni-0f0f0f0f0f0f0f0f0",
            "local-hostname": self.hostname,
            "local-ipv4s": self.local_ipv4,
            "mac": mac,
            "owner-id": self.account_id,
            "security-group-ids": "sg-0f0f0f0f0f0f0f0f0",
            "security-groups": "default",
            "subnet-id": "subnet-0f0f0f0f0f0f0f0f0",
            "subnet-ipv4-cidr-block": self.subnet_cidr,
            "vpc-id": "vpc-0f0f0f0f0f0f0f0f0",
            "vpc-ipv4-cidr-block": self.subnet_cidr,
            "vpc-ipv4-cidr-blocks": self.subnet_cidr,
        }
        return {
            "ami-id": self.ami_id,
            "ami-launch-index": "0",
            "ami-manifest-path": "(unknown)",
            "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
            "hostname": self.hostname,
            "instance-action": "none",
            "instance-id": self.instance_id,
            "instance-life-cycle": "on-demand",
            "instance-type": self.instance_type,
            "local-hostname": self.hostname,
            "local-ipv4": self.local_ipv4,
            "mac": mac,
            "network": {"interfaces": {"macs": {mac: interface}}},
            "placement": {"availability-zone": self.availability_zone, "region": self.region},
            "profile": "default-hvm",
            # Listed as a folder; its own listing ("0=name") is answered by _public_keys.
            "public-keys": {self.key_name: self.public_key},
            "reservation-id": "r-0f0f0f0f0f0f0f0f0",
            "security-groups": "default",
            "services": {"domain": "amazonaws.com", "partition": "aws"},
        }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    had_valid_token: bool
    status: int


@dataclass
class _State:
    instance: Ec2Instance
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic expiry
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def log(self, entry: Request) -> None:
        with self.lock:
            self.requests.append(entry)

    def new_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(42)
        with self.lock:
            self.tokens[token] = time.monotonic() + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry


def _listing(folder: Tree, *, public_keys: bool = False) -> str:
    if public_keys:
        # cloud-init's crawler turns "0=name" into the leaf 0/openssh-key.
        return "\n".join(f"{i}={name}" for i, name in enumerate(folder))
    return "\n".join(f"{k}/" if not isinstance(v, str) else k for k, v in folder.items())


def resolve(instance: Ec2Instance, path: str) -> str | None:
    """The body a GET of `path` answers, or None for 404. Pure: the tree logic, testable without HTTP."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts:
        return "\n".join(API_VERSIONS)
    version, rest = parts[0], parts[1:]
    if version not in API_VERSIONS:
        return None
    top: dict[str, Tree | str] = {
        "dynamic": {"instance-identity": {"document": json.dumps(instance.identity_document(), indent=2)}},
        "meta-data": instance.meta_data(),
    }
    if instance.user_data is not None:
        top["user-data"] = instance.user_data.decode("utf-8", errors="surrogateescape")
    if not rest:
        return _listing(top)
    if rest[0] == "meta-data" and rest[1:2] == ["public-keys"]:
        return _public_keys(instance, rest[2:])
    node: Tree | str = top
    for name in rest:
        if isinstance(node, str) or name not in node:
            return None
        node = node[name]
    return node if isinstance(node, str) else _listing(node)


def _public_keys(instance: Ec2Instance, rest: list[str]) -> str | None:
    keys = {instance.key_name: instance.public_key}
    if not rest:
        return _listing(keys, public_keys=True)
    if rest[0] != "0":
        return None
    if len(rest) == 1:
        return "openssh-key"
    if rest[1:] == ["openssh-key"]:
        return instance.public_key
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "EC2ws"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: object) -> None:
        # The request log is `MetadataServer.requests`; keep the test output and stderr clean.
        return

    def _answer(self, status: int, body: str = "", headers: Mapping[str, str] | None = None) -> None:
        data = body.encode("utf-8", errors="surrogateescape")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def do_PUT(self) -> None:
        state = self.server.state
        self._drain_body()
        path = self.path.split("?", 1)[0]
        if path != TOKEN_PATH:
            status, body, headers = 405, "", {"Allow": "GET"}
        elif self.headers.get("X-Forwarded-For") is not None:
            status, body, headers = 403, "Forbidden", {}
        else:
            raw = (self.headers.get(TTL_HEADER) or "").strip()
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_TTL_S:
                status, body, headers = 400, "Bad Request", {}
            else:
                status, body, headers = 200, state.new_token(int(raw)), {TTL_HEADER: raw}
        state.log(Request("PUT", path, False, status))
        self._answer(status, body, headers)

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        valid = state.token_valid(self.headers.get(TOKEN_HEADER))
        if path == TOKEN_PATH:
            status, body, headers = 405, "", {"Allow": "PUT"}
        elif not valid:
            status, body, headers = 401, "Unauthorized", {}
        else:
            found = resolve(state.instance, path)
            status, body, headers = (404, "Not Found", {}) if found is None else (200, found, {})
        state.log(Request("GET", path, valid, status))
        self._answer(status, body, headers)

    def _refuse(self) -> None:
        self.server.state.log(Request(self.command, self.path, False, 405))
        self._answer(405, "", {"Allow": "GET, PUT"})

    do_POST = do_DELETE = do_PATCH = _refuse


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


class MetadataServer:
    """A running IMDS for one instance; a context manager (started on enter, stopped on exit)."""

    def __init__(self, instance: Ec2Instance) -> None:
        self.instance = instance
        self._state = _State(instance)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MetadataServer:
        self._server = _Server(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="imds", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the metadata server is not running (use it as a context manager)")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def token_used(self) -> bool:
        """True when a token was issued and then carried by a successful GET (the guest spoke IMDSv2)."""
        reqs = self.requests
        return any(r.method == "PUT" and r.status == 200 for r in reqs) and any(
            r.method == "GET" and r.had_valid_token and r.status == 200 for r in reqs
        )

    def fetched(self, suffix: str) -> bool:
        """True when a GET ending in `suffix` (e.g. "meta-data/public-keys/0/openssh-key") got a 200."""
        return any(r.method == "GET" and r.status == 200 and r.path.endswith(suffix) for r in self.requests)

    def guestfwd(self, python: str = sys.executable) -> str:
        """The `guestfwd=` netdev option forwarding the guest's 169.254.169.254:80 to this server."""
        command = f"{shlex.quote(python)} {shlex.quote(str(RELAY))} {self.port}"
        # QEMU's option parser reads ",," as a literal comma.
        return f"guestfwd=tcp:{IMDS_ADDRESS}:80-cmd:{command}".replace(",", ",,")

    def netdev_options(self, python: str = sys.executable) -> str:
        """User-network suboptions (after `user,id=...,`): the network holding IMDS_ADDRESS, the forward."""
        return f"net={GUEST_NET},{self.guestfwd(python)}"
