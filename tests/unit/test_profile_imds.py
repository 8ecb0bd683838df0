"""The EC2 metadata server (IMDSv2): tokens as AWS enforces them, the tree cloud-init's crawler walks."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from factory.stages.verify.profiles import imds
from factory.stages.verify.profiles.imds import Ec2Instance, MetadataServer

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLEEXAMPLE verify@profile"
INSTANCE = Ec2Instance(
    instance_id="i-0123456789abcdef0",
    hostname="ip-169-254-169-15.ec2.internal",
    public_key=KEY,
    mac="52:54:00:AB:CD:EF",
    region="eu-west-1",
)


@pytest.fixture
def server() -> Iterator[MetadataServer]:
    with MetadataServer(INSTANCE) as s:
        yield s


def call(
    server: MetadataServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), resp
    finally:
        conn.close()


def token(server: MetadataServer, ttl: str = "21600") -> str:
    status, body, resp = call(server, "PUT", imds.TOKEN_PATH, {imds.TTL_HEADER: ttl})
    assert status == 200
    assert resp.getheader(imds.TTL_HEADER) == ttl
    return body


def get(server: MetadataServer, path: str, tok: str) -> tuple[int, str]:
    status, body, _ = call(server, "GET", path, {imds.TOKEN_HEADER: tok})
    return status, body


def test_get_without_token_is_401(server: MetadataServer) -> None:
    status, _, _ = call(server, "GET", "/latest/meta-data/instance-id")
    assert status == 401
    assert server.requests[-1] == imds.Request("GET", "/latest/meta-data/instance-id", False, 401)


def test_get_with_unknown_token_is_401(server: MetadataServer) -> None:
    assert get(server, "/latest/meta-data/instance-id", "not-a-token")[0] == 401


def test_expired_token_is_401(server: MetadataServer) -> None:
    tok = token(server, "1")
    assert get(server, "/latest/meta-data/instance-id", tok) == (200, INSTANCE.instance_id)
    time.sleep(1.2)
    assert get(server, "/latest/meta-data/instance-id", tok)[0] == 401


@pytest.mark.parametrize(
    "ttl", ["0", "21601", "-5", "abc", ""], ids=["zero", "over-6h", "negative", "text", "empty"]
)
def test_token_ttl_out_of_range_is_400(server: MetadataServer, ttl: str) -> None:
    assert call(server, "PUT", imds.TOKEN_PATH, {imds.TTL_HEADER: ttl})[0] == 400


def test_token_put_without_ttl_header_is_400(server: MetadataServer) -> None:
    assert call(server, "PUT", imds.TOKEN_PATH)[0] == 400


def test_token_put_with_x_forwarded_for_is_403(server: MetadataServer) -> None:
    headers = {imds.TTL_HEADER: "60", "X-Forwarded-For": "203.0.113.7"}
    assert call(server, "PUT", imds.TOKEN_PATH, headers)[0] == 403


def test_token_route_refuses_get_and_other_routes_refuse_put(server: MetadataServer) -> None:
    assert call(server, "GET", imds.TOKEN_PATH)[0] == 405
    assert call(server, "PUT", "/latest/meta-data/", {imds.TTL_HEADER: "60"})[0] == 405
    assert call(server, "POST", "/latest/meta-data/")[0] == 405


def test_unknown_path_and_version_are_404(server: MetadataServer) -> None:
    tok = token(server)
    assert get(server, "/latest/meta-data/no-such-thing", tok)[0] == 404
    assert get(server, "/1999-01-01/meta-data/instance-id", tok)[0] == 404
    assert get(server, "/latest/meta-data/instance-id/deeper", tok)[0] == 404


def test_user_data_is_404_when_none_and_listed_only_when_given(server: MetadataServer) -> None:
    tok = token(server)
    assert get(server, "/latest/user-data", tok)[0] == 404
    assert get(server, "/latest/", tok) == (200, "dynamic/\nmeta-data/")
    with_ud = Ec2Instance(**{**INSTANCE.__dict__, "user_data": b"#cloud-config\nhostname: x\n"})
    with MetadataServer(with_ud) as other:
        tok2 = token(other)
        assert get(other, "/latest/user-data", tok2) == (200, "#cloud-config\nhostname: x\n")
        assert get(other, "/latest/", tok2) == (200, "dynamic/\nmeta-data/\nuser-data")


def test_versions_cloud_init_probes_are_served(server: MetadataServer) -> None:
    tok = token(server)
    assert get(server, "/", tok)[1].splitlines() == list(imds.API_VERSIONS)
    for version in ("2021-03-23", "2018-09-24", "2016-09-02", "2009-04-04", "latest"):
        assert get(server, f"/{version}/meta-data/instance-id", tok) == (200, INSTANCE.instance_id)


def test_public_keys_listed_as_index_equals_name(server: MetadataServer) -> None:
    tok = token(server)
    assert get(server, "/2021-03-23/meta-data/public-keys/", tok) == (200, "0=factory-verify")
    assert get(server, "/2021-03-23/meta-data/public-keys/0/", tok) == (200, "openssh-key")
    assert get(server, "/2021-03-23/meta-data/public-keys/0/openssh-key", tok) == (200, KEY)
    assert get(server, "/2021-03-23/meta-data/public-keys/1/openssh-key", tok)[0] == 404
    assert server.fetched("meta-data/public-keys/0/openssh-key")
    assert server.token_used()


def crawl(server: MetadataServer, tok: str, url: str) -> object:
    """Walk a folder the way cloud-init's MetadataMaterializer does (folders end in '/', 'N=name' keys)."""
    status, body = get(server, url, tok)
    assert status == 200, url
    out: dict[str, object] = {}
    for line in body.splitlines():
        if line.endswith("/"):
            out[line.rstrip("/")] = crawl(server, tok, url + line)
        elif "=" in line:
            index, name = line.split("=", 1)
            out[name] = get(server, f"{url}{index}/openssh-key", tok)[1]
        else:
            leaf = get(server, url + line, tok)
            assert leaf[0] == 200, url + line
            out[line] = json.loads(leaf[1]) if leaf[1].startswith("{") else leaf[1]
    return out


def test_crawl_gives_what_the_ec2_datasource_reads(server: MetadataServer) -> None:
    tok = token(server)
    md = crawl(server, tok, "/2021-03-23/meta-data/")
    assert isinstance(md, dict)
    assert md["instance-id"] == INSTANCE.instance_id
    assert md["local-hostname"] == md["hostname"] == INSTANCE.hostname
    assert md["local-ipv4"] == imds.GUEST_DHCP_ADDRESS
    assert md["mac"] == "52:54:00:ab:cd:ef"
    assert md["placement"] == {"availability-zone": "eu-west-1a", "region": "eu-west-1"}
    assert md["public-keys"] == {"factory-verify": KEY}
    nic = md["network"]["interfaces"]["macs"]["52:54:00:ab:cd:ef"]
    assert nic["device-number"] == "0"
    assert nic["local-ipv4s"] == imds.GUEST_DHCP_ADDRESS
    assert nic["subnet-ipv4-cidr-block"] == imds.GUEST_NET
    identity = crawl(server, tok, "/2021-03-23/dynamic/instance-identity/")
    assert isinstance(identity, dict)
    doc = identity["document"]
    assert isinstance(doc, dict)
    assert (doc["instanceId"], doc["region"], doc["availabilityZone"]) == (
        INSTANCE.instance_id,
        "eu-west-1",
        "eu-west-1a",
    )
    assert all(r.had_valid_token for r in server.requests if r.method == "GET")


def test_guestfwd_option_uses_the_cmd_form_inside_the_guest_network(server: MetadataServer) -> None:
    opts = server.netdev_options(python="/usr/bin/python3")
    forward = f"guestfwd=tcp:169.254.169.254:80-cmd:/usr/bin/python3 {imds.RELAY} {server.port}"
    assert opts == f"net=169.254.169.0/24,{forward}"


def test_relay_carries_a_request_from_a_guest_socket(server: MetadataServer) -> None:
    # As libslirp does: the guest's connection is the relay's stdin and stdout (one socket).
    guest, relay_end = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(imds.RELAY), str(server.port)],
        stdin=relay_end.fileno(),
        stdout=relay_end.fileno(),
    )
    relay_end.close()
    try:
        guest.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n")
        guest.sendall(f"{imds.TTL_HEADER}: 60\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        guest.settimeout(10)
        while chunk := guest.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert proc.wait(timeout=10) == 0
    finally:
        guest.close()
        if proc.poll() is None:
            proc.kill()
    assert server.requests[-1].method == "PUT" and server.requests[-1].status == 200
