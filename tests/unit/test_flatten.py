"""factory.kickstart.flatten: %include inlining with a line map, and every bad input as its own case."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.errors import EXIT_USAGE
from factory.kickstart.flatten import (
    IncludeLoopError,
    KickstartInputError,
    MissingIncludeError,
    flatten,
)


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
