"""factory.stages.validate.flatten: %include inlining with a line map, and every bad input as its own case."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import EXIT_USAGE
from factory.stages.validate.flatten import (
    IncludeLoopError,
    KickstartInputError,
    MissingIncludeError,
    flatten,
)
from factory.stages.validate.prewrites import written_paths


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def test_inlines_includes_and_maps_every_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "main.ks": "text\n%include common/a.ks\nskipx\n",
            "common/a.ks": "# a\nlang en_US\n%include b.ks\n",
            "common/b.ks": "keyboard us\n",
        },
    )
    flat = flatten(tmp_path / "main.ks")
    assert flat.text == "text\n# a\nlang en_US\nkeyboard us\nskipx\n"
    main, a, b = tmp_path / "main.ks", tmp_path / "common/a.ks", tmp_path / "common/b.ks"
    assert [flat.origin(n) for n in range(1, 6)] == [(main, 1), (a, 1), (a, 2), (b, 1), (main, 3)]
    assert flat.files == (main, a, b)


def test_include_inside_a_section_is_inlined_too(tmp_path: Path) -> None:
    # pykickstart follows %include inside %packages/%post as well: the flattened text must mean the same.
    write(tmp_path, {"m.ks": "%packages\n%include pk.ks\n%end\n", "pk.ks": "vim\n"})
    assert flatten(tmp_path / "m.ks").text == "%packages\nvim\n%end\n"


def test_same_file_included_twice_is_not_a_loop(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": "%include x.ks\n%include x.ks\n", "x.ks": "skipx\n"})
    flat = flatten(tmp_path / "m.ks")
    assert flat.text == "skipx\nskipx\n"
    assert flat.files == (tmp_path / "m.ks", tmp_path / "x.ks")


def test_bare_include_is_kept_for_pykickstart_to_report(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": "text\n%include\n"})
    flat = flatten(tmp_path / "m.ks")
    assert flat.text == "text\n%include\n"
    assert flat.origin(2) == (tmp_path / "m.ks", 2)


@pytest.mark.parametrize(
    ("line", "expected"),
    [(0, ("m.ks", 0)), (-3, ("m.ks", 0)), (2, ("i.ks", 1)), (99, ("m.ks", 3))],
    ids=["zero-is-whole-file", "negative", "included", "past-end-clamps-to-last"],
)
def test_origin_edges(tmp_path: Path, line: int, expected: tuple[str, int]) -> None:
    write(tmp_path, {"m.ks": "text\n%include i.ks\nskipx\n", "i.ks": "lang C\n"})
    assert flatten(tmp_path / "m.ks").origin(line) == (tmp_path / expected[0], expected[1])


BAD = [
    pytest.param({}, KickstartInputError, "m.ks: kickstart not found", id="missing-file"),
    pytest.param({"m.ks": ""}, KickstartInputError, "m.ks: kickstart is empty", id="empty-file"),
    pytest.param({"m.ks": " \n\n"}, KickstartInputError, "m.ks: kickstart is empty", id="blank-file"),
    pytest.param({"m.ks": b"\x7fELF\x00\x01"}, KickstartInputError, "binary file", id="binary-file"),
    pytest.param({"m.ks": b"text\n\xff\xfe\n"}, KickstartInputError, "not UTF-8", id="not-utf8"),
    pytest.param({"m.ks/x": "dir"}, KickstartInputError, "is a directory", id="directory"),
    pytest.param(
        {"m.ks": "text\n%include nope.ks\n"},
        MissingIncludeError,
        "m.ks:2: %include nope.ks: file not found",
        id="missing-include",
    ),
    pytest.param(
        {"m.ks": "text\n%include a.ks\n", "a.ks": "\n\n%include gone/x.ks\n"},
        MissingIncludeError,
        "a.ks:3: %include gone/x.ks: file not found",
        id="missing-nested-include",
    ),
    pytest.param(
        {"m.ks": "%include m.ks\n"},
        IncludeLoopError,
        "m.ks:1: %include loop: m.ks -> m.ks",
        id="self-include",
    ),
    pytest.param(
        {"m.ks": "text\n%include a.ks\n", "a.ks": "lang C\n%include m.ks\n"},
        IncludeLoopError,
        "a.ks:2: %include loop: m.ks -> a.ks -> m.ks",
        id="include-loop",
    ),
    pytest.param(
        {"m.ks": "text\n%include e.ks\n", "e.ks": ""},
        KickstartInputError,
        "e.ks: included kickstart is empty (included from m.ks:2)",
        id="empty-include",
    ),
    pytest.param(
        {"m.ks": "text\n%include b.ks\n", "b.ks": b"\x00\x01"},
        KickstartInputError,
        "b.ks: included kickstart is a binary file, not text (included from m.ks:2)",
        id="binary-include",
    ),
]


@pytest.mark.parametrize(("files", "error", "message"), BAD)
def test_bad_input(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str | bytes],
    error: type[Exception],
    message: str,
) -> None:
    write(tmp_path, files)
    monkeypatch.chdir(tmp_path)  # messages show paths relative to the cwd
    with pytest.raises(error) as info:
        flatten(Path("m.ks"))
    assert isinstance(info.value, KickstartInputError)
    assert info.value.exit_code == EXIT_USAGE
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 000 does not stop reading: make the read itself fail.
    write(tmp_path, {"m.ks": "text\n"})

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(KickstartInputError, match="is not readable"):
        flatten(tmp_path / "m.ks")


def test_swaps_replace_an_include_target(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": "text\n%include k/a.ks\n", "k/a.ks": "lang A\n", "k/b.ks": "lang B\n"})
    flat = flatten(tmp_path / "m.ks", {"k/a.ks": "k/b.ks"})
    assert flat.text == "text\nlang B\n"
    assert flat.origin(2) == (tmp_path / "k/b.ks", 1)


def test_a_swap_without_its_include_line_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": "text\n"})
    with pytest.raises(KickstartInputError, match=r"has no `%include k/a\.ks` line to swap for k/b\.ks"):
        flatten(tmp_path / "m.ks", {"k/a.ks": "k/b.ks"})


# ------------------------------------------------------------------ %include of a file a %pre writes
# (a %pre body, its interpreter, the paths it writes as the gate reads it)
PRE_WRITES = [
    pytest.param('echo "part / --size=1024" > /tmp/part-include', None, {"/tmp/part-include"}, id="redirect"),
    pytest.param("echo 'network --bootproto=dhcp' >>/tmp/net", None, {"/tmp/net"}, id="append-no-space"),
    pytest.param("cat > /tmp/part-include <<EOF\npart / --size=1 > x\nEOF", None, {"/tmp/part-include"},
                 id="cat-heredoc"),
    pytest.param("cat <<'END' >/tmp/p\necho data > /tmp/not-this\nEND", None, {"/tmp/p"},
                 id="heredoc-body-is-data"),
    pytest.param("cat <<-EOF | tee /tmp/t\n\tpart /\n\tEOF", None, {"/tmp/t"}, id="heredoc-dash-into-tee"),
    pytest.param("echo x | tee -a /tmp/a /tmp/b >/dev/null", None, {"/tmp/a", "/tmp/b", "/dev/null"},
                 id="tee-several"),
    # Without a trailing slash the destination may be a file or a folder: both readings count.
    pytest.param("cp /mnt/ks/disk.ks /tmp/disk.ks", None, {"/tmp/disk.ks", "/tmp/disk.ks/disk.ks"},
                 id="cp-file"),
    pytest.param("cp -f /mnt/ks/part-include /tmp/", None, {"/tmp/part-include"}, id="cp-into-folder"),
    pytest.param("cp /mnt/ks/part-include /tmp 2>/dev/null", None,
                 {"/tmp", "/tmp/part-include", "/dev/null"}, id="cp-folder-no-slash-and-fd-redirect"),
    pytest.param("printf 'part /boot --size=%s\\n' 500 > /tmp/boot", None, {"/tmp/boot"}, id="printf"),
    pytest.param("F=/tmp/part-include\necho part / > $F", None, {"/tmp/part-include"}, id="variable"),
    pytest.param("D=/tmp\necho x > \"${D}/net.ks\"", None, {"/tmp/net.ks"}, id="braced-variable-quoted"),
    pytest.param("echo x > $UNKNOWN/file", None, set(), id="unknown-variable-is-not-claimed"),
    pytest.param("echo x > $(mktemp)", None, set(), id="command-substitution-is-not-claimed"),
    pytest.param("echo 'a > /tmp/quoted'", None, set(), id="redirect-inside-quotes-is-text"),
    pytest.param("# echo x > /tmp/commented", None, set(), id="comment"),
    pytest.param("echo x \\\n  > /tmp/continued", None, {"/tmp/continued"}, id="line-continuation"),
    pytest.param("wget -q -O /tmp/w http://ks/w; curl -s -o /tmp/c http://ks/c", None, {"/tmp/w", "/tmp/c"},
                 id="wget-curl"),
    pytest.param("dd if=/dev/zero of=/tmp/dd bs=1 count=0", None, {"/tmp/dd"}, id="dd"),
    pytest.param("touch /tmp/empty-include", None, {"/tmp/empty-include"}, id="touch"),
    pytest.param("ls 2>&1 >/tmp/../tmp/out", None, {"/tmp/out"}, id="fd-dup-and-normalised-path"),
    pytest.param("echo x > relative.ks", None, set(), id="relative-path-not-claimed"),
    pytest.param("echo 'unbalanced > /tmp/x", None, set(), id="unbalanced-quote"),
    pytest.param('with open("/tmp/part-include", "w") as f:\n    f.write("part /")', "/usr/bin/python",
                 {"/tmp/part-include"}, id="python-open-write"),
    pytest.param('open("/tmp/read-only").read()', "/usr/bin/python3", set(), id="python-open-read"),
    pytest.param("print 'x' > '/tmp/p'", "/usr/bin/perl", set(), id="other-interpreter"),
]  # fmt: skip


@pytest.mark.parametrize(("script", "interpreter", "expected"), PRE_WRITES)
def test_what_a_pre_script_writes(script: str, interpreter: str | None, expected: set[str]) -> None:
    assert written_paths(script, interpreter) == expected


PRE_PART = '%pre\necho "part / --fstype=xfs --size=4096" > /tmp/part-include\n%end\n'


def test_include_written_by_pre_is_kept_as_a_note(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": f"text\n{PRE_PART}%include /tmp/part-include\npoweroff\n"})
    flat = flatten(tmp_path / "m.ks")
    # The line stays for anaconda, which runs %pre before reading includes.
    assert flat.text.splitlines()[4] == "%include /tmp/part-include"
    assert [(n.file.name, n.line, n.message) for n in flat.notes] == [
        ("m.ks", 5, "%include /tmp/part-include: written at install time by %pre at line 2: not checked")
    ]


def test_pre_in_another_file_is_named_with_its_file(tmp_path: Path) -> None:
    write(tmp_path, {"m.ks": "%include pre.ks\n%include /tmp/part-include\n", "pre.ks": PRE_PART})
    (note,) = flatten(tmp_path / "m.ks").notes
    assert note.message.endswith(f"by %pre at {tmp_path / 'pre.ks'}:1: not checked")


def test_pre_after_the_include_counts(tmp_path: Path) -> None:
    # anaconda runs every %pre before it reads any include, wherever the %pre stands.
    write(tmp_path, {"m.ks": f"%include /tmp/part-include\n{PRE_PART}"})
    (note,) = flatten(tmp_path / "m.ks").notes
    assert "by %pre at line 2" in note.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("%include /tmp/part-include\n", id="no-pre"),
        pytest.param(
            "%pre\necho x > /tmp/other\n%end\n%include /tmp/part-include\n", id="pre-writes-another"
        ),
        pytest.param(
            "%post\necho x > /tmp/part-include\n%end\n%include /tmp/part-include\n", id="post-not-pre"
        ),
        pytest.param(
            "%pre\ncat <<EOF >/tmp/x\necho > /tmp/part-include\nEOF\n%end\n%include /tmp/part-include\n",
            id="only-in-heredoc-data",
        ),
        pytest.param("%pre\necho x > /tmp/part-include\n%end\n%include part-include\n", id="relative-target"),
    ],
)
def test_missing_include_no_pre_writes_stays_an_error(tmp_path: Path, text: str) -> None:
    write(tmp_path, {"m.ks": text})
    with pytest.raises(MissingIncludeError) as err:
        flatten(tmp_path / "m.ks")
    assert "file not found" in err.value.message
    assert err.value.exit_code == EXIT_USAGE
