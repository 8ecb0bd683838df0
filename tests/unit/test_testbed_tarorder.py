"""The base tarball's package order (factory.testbed.tarorder): pure planning plus a real round trip."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from factory.testbed.tarorder import Member, plan, reorder


def _paths(members: list[Member], order: list[int]) -> list[str]:
    return [members[i].path for i in order]


def test_files_are_grouped_by_package_in_package_order() -> None:
    members = [Member("/"), Member("/usr"), Member("/usr/bin"), Member("/usr/bin/b"), Member("/usr/bin/a")]
    lists = {"a": ["/.", "/usr", "/usr/bin", "/usr/bin/a"], "b": ["/usr/bin/b"]}
    order, first = plan(members, lists, ["a", "b"])
    assert _paths(members, order) == ["/", "/usr", "/usr/bin", "/usr/bin/a", "/usr/bin/b"]
    assert [members[i].path for i in first if i is not None] == ["/", "/usr/bin/b"]


def test_a_directory_precedes_everything_beneath_it() -> None:
    # /etc/b is only owned by the second package, but its files must come after /etc itself.
    members = [Member("/"), Member("/etc"), Member("/etc/x"), Member("/usr"), Member("/usr/y")]
    lists = {"first": ["/usr/y"], "second": ["/etc/x", "/etc"]}
    order, _ = plan(members, lists, ["first", "second"])
    paths = _paths(members, order)
    for child in ("/etc/x", "/usr/y"):
        parent = child.rsplit("/", 1)[0]
        assert paths.index(parent) < paths.index(child), paths


def test_unowned_files_come_last() -> None:
    members = [Member("/"), Member("/etc"), Member("/etc/passwd"), Member("/etc/pkgfile")]
    order, first = plan(members, {"p": ["/etc/pkgfile"]}, ["p"])
    assert _paths(members, order)[-1] == "/etc/passwd"
    # The package's first printed path is the root directory, moved up ahead of its file.
    assert first == [0]


def test_merged_usr_paths_match_dpkg_lists() -> None:
    # dpkg lists /bin/dash; bookworm's tarball holds /usr/bin/dash behind the /bin symlink.
    members = [Member("/"), Member("/bin"), Member("/usr"), Member("/usr/bin"), Member("/usr/bin/dash")]
    order, first = plan(members, {"base": ["/usr/bin"], "dash": ["/bin/dash"]}, ["base", "dash"])
    assert first[1] is not None and members[first[1]].path == "/usr/bin/dash"
    assert _paths(members, order).index("/usr/bin") < _paths(members, order).index("/usr/bin/dash")


def test_a_hard_link_never_precedes_its_target() -> None:
    members = [
        Member("/"),
        Member("/usr"),
        Member("/usr/perl"),
        Member("/usr/perl5", link_target="/usr/perl"),
    ]
    order, _ = plan(members, {"a": ["/usr/perl5"], "b": ["/usr/perl"]}, ["a", "b"])
    paths = _paths(members, order)
    assert paths.index("/usr/perl") < paths.index("/usr/perl5")


def test_a_package_without_files_of_its_own_has_no_marker() -> None:
    members = [Member("/"), Member("/usr"), Member("/usr/a")]
    _, first = plan(members, {"a": ["/usr/a"], "meta": ["/usr"]}, ["a", "meta"])
    assert first[1] is None


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.skipif(shutil.which("tar") is None, reason="host tar missing")
def test_reorder_round_trip_markers_are_what_tar_prints(tmp_path: Path) -> None:
    src = tmp_path / "in.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        for name in (
            "./",
            "./usr",
            "./usr/bin",
            "./var",
            "./var/lib",
            "./var/lib/dpkg",
            "./var/lib/dpkg/info",
        ):
            _add(tar, name)
        _add(tar, "./usr/bin/zed", b"z")
        _add(tar, "./usr/bin/alpha", b"a")
        _add(tar, "./var/lib/dpkg/info/alpha.list", b"/.\n/usr\n/usr/bin\n/usr/bin/alpha\n")
        _add(tar, "./var/lib/dpkg/info/zed:amd64.list", b"/usr/bin/zed\n")
    dest = tmp_path / "out.tar.gz"
    marks = reorder(src, dest, ["alpha", "zed"])
    printed = subprocess.run(["tar", "-tzf", dest], capture_output=True, check=True).stdout.decode().split()
    assert marks == [("alpha", "./"), ("zed", "./usr/bin/zed")]
    assert printed.index("./usr/bin/alpha") < printed.index("./usr/bin/zed")
    assert all(mark in printed for _, mark in marks)
    with tarfile.open(dest) as tar:
        zed = tar.extractfile("./usr/bin/zed")
        assert zed is not None and zed.read() == b"z"
