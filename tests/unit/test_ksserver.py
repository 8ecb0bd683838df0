"""The kickstart HTTP server: 127.0.0.1 only, secret path, 404 for everything else, body-free log."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.stages.install.ksserver import KickstartServer

BODY = "rootpw --iscrypted $6$salt$SECRETHASH\n%post\necho hi\n%end\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KickstartServer]:
    with KickstartServer(BODY, tmp_path / "ks-requests.log") as srv:
        yield srv


def get(srv: KickstartServer, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_binds_loopback_only_on_a_free_port(server: KickstartServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.guest_url() == f"http://10.0.2.2:{server.port}{server.path}"


def test_serves_the_kickstart_at_the_secret_path(server: KickstartServer) -> None:
    assert not server.fetched
    assert get(server, server.path) == (200, BODY.encode())
    assert server.fetched


def test_head_does_not_count_as_fetched(server: KickstartServer) -> None:
    status, body = get(server, server.path, "HEAD")
    assert (status, body) == (200, b"")
    assert not server.fetched


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/ks.cfg", id="plain-name"),
        pytest.param("/", id="root"),
        pytest.param("/wrongtoken/ks.cfg", id="wrong-token"),
        pytest.param("SECRET/../ks.cfg", id="traversal-from-secret"),
        pytest.param("SECRET?x=1", id="query-string"),
        pytest.param("SECRETx", id="secret-prefix"),
    ],
)
def test_everything_else_is_404(server: KickstartServer, path: str) -> None:
    status, body = get(server, path.replace("SECRET", server.path))
    assert status == 404
    assert b"SECRETHASH" not in body
    assert not server.fetched


def test_each_request_is_logged_without_the_body(server: KickstartServer, tmp_path: Path) -> None:
    get(server, server.path)
    get(server, "/nope")
    server.close()
    log = (tmp_path / "ks-requests.log").read_text()
    lines = log.splitlines()
    assert len(lines) == 2
    assert f"GET {server.path} 200 {len(BODY)}" in lines[0]
    assert "GET /nope 404" in lines[1]
    assert "SECRETHASH" not in log and "rootpw" not in log
    assert [(r.path, r.status) for r in server.requests()] == [(server.path, 200), ("/nope", 404)]


def test_paths_are_unguessable(tmp_path: Path) -> None:
    paths = set()
    for i in range(5):
        with KickstartServer(BODY, tmp_path / f"log{i}") as srv:
            paths.add(srv.path)
            # 16 random bytes, url-safe base64: 22 characters of token.
            assert len(srv.path.split("/")[1]) >= 22
    assert len(paths) == 5


def test_not_reachable_on_other_addresses(server: KickstartServer) -> None:
    import socket

    # The wildcard address would also answer on 127.0.0.2; a 127.0.0.1-only socket does not.
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.settimeout(2)
        s.connect(("127.0.0.2", server.port))


# --- boot.mode pxe: the install tree under the same secret prefix -------------------------------------------


@pytest.fixture
def repo_server(tmp_path: Path) -> Iterator[KickstartServer]:
    repo = tmp_path / "repo"
    (repo / "images").mkdir(parents=True)
    (repo / "Packages").mkdir()
    (repo / "images" / "install.img").write_bytes(b"\x1f\x8b\x00binary\r\n\r\nstill body")
    (repo / "Packages" / "tree_2.1.0-1_amd64.deb").write_bytes(b"!<arch>\n")
    (repo / "Packages" / "less_590-2_amd64.deb").write_bytes(b"!<arch>\n")
    (tmp_path / "secret.txt").write_text("outside the tree\n")
    with KickstartServer(BODY, tmp_path / "ks-requests.log", repo=repo) as srv:
        yield srv


def test_serves_the_install_tree_byte_for_byte(repo_server: KickstartServer) -> None:
    status, body = get(repo_server, repo_server.repo_path + "images/install.img")
    assert (status, body) == (200, b"\x1f\x8b\x00binary\r\n\r\nstill body")
    assert repo_server.guest_url(repo_server.repo_path).endswith("/repo/")
    assert not repo_server.fetched  # only the kickstart itself counts as "fetched"


def test_lists_a_folder_one_link_a_line(repo_server: KickstartServer) -> None:
    status, body = get(repo_server, repo_server.repo_path + "Packages/")
    assert status == 200
    assert body.decode().splitlines() == [
        '<a href="less_590-2_amd64.deb">less_590-2_amd64.deb</a>',
        '<a href="tree_2.1.0-1_amd64.deb">tree_2.1.0-1_amd64.deb</a>',
    ]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("../secret.txt", id="dot-dot"),
        pytest.param("%2e%2e/secret.txt", id="encoded-dot-dot"),
        pytest.param("images/missing.img", id="missing"),
    ],
)
def test_nothing_outside_the_tree(repo_server: KickstartServer, path: str) -> None:
    assert get(repo_server, repo_server.repo_path + path)[0] == 404


def test_the_tree_needs_the_secret_prefix(repo_server: KickstartServer) -> None:
    assert get(repo_server, "/repo/images/install.img")[0] == 404


def test_no_tree_without_pxe(server: KickstartServer) -> None:
    assert get(server, server.repo_path + "images/install.img")[0] == 404
