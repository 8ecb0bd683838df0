"""The testbed installer's kickstart reader (ksparse.sh): words, sections and line numbers.

Runs the real script with busybox's sh and awk (what the initramfs has), one named case per input.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from factory.testbed.build import DATA

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(
    BUSYBOX is None, reason="busybox not installed (apt-get install busybox-static)"
)


def plan(tmp_path: Path, ks: str) -> list[list[str]]:
    (tmp_path / "ks.cfg").write_text(ks)
    assert BUSYBOX is not None
    out = subprocess.run(
        [BUSYBOX, "sh", str(DATA / "ksparse.sh"), str(tmp_path / "ks.cfg"), str(tmp_path)],
        capture_output=True,
        check=True,
    )
    return [line.split("\t") for line in out.stdout.decode().splitlines()]


@pytest.mark.parametrize(
    ("ks", "expected"),
    [
        pytest.param("text\n", [["C", "1", "text"]], id="bare-command"),
        pytest.param("# c\n\n  text # trailing\n", [["C", "3", "text"]], id="comments-and-blank-lines"),
        pytest.param(
            'bootloader --append="console=ttyS0,115200 console=tty0"\n',
            [["C", "1", "bootloader", "--append=console=ttyS0,115200 console=tty0"]],
            id="double-quoted-value",
        ),
        pytest.param(
            "rootpw --iscrypted $6$salt$h/a.sh\n",
            [["C", "1", "rootpw", "--iscrypted", "$6$salt$h/a.sh"]],
            id="hash-kept-literal",
        ),
        pytest.param("user --name='a b'\n", [["C", "1", "user", "--name=a b"]], id="single-quotes"),
        pytest.param('network "--device=eth0\n', [["E", "1", "No closing quotation"]], id="unclosed-quote"),
        pytest.param(
            "%packages\n@core\ntree\n%end\n",
            [["P", "1", "%packages"], ["K", "2", "@core"], ["K", "3", "tree"]],
            id="packages",
        ),
        pytest.param(
            "%post --erroronfail --log=/root/p.log\necho $HOME\n%end\nshutdown\n",
            [["S", "1", "1", "--erroronfail", "--log=/root/p.log"], ["C", "4", "shutdown"]],
            id="post-header-and-after",
        ),
        pytest.param("%pre\nexit 1\n%end\n", [["X", "1", "%pre"]], id="pre-skipped"),
        pytest.param(
            "%addon org_fedora_oscap\n    content-type = scap-security-guide\n%end\ntext\n",
            [["X", "1", "%addon", "org_fedora_oscap"], ["C", "4", "text"]],
            id="addon-named",
        ),
        pytest.param(
            "%post\necho\n",
            [["S", "1", "1"], ["E", "2", "Section %post does not end with %end."]],
            id="no-end",
        ),
    ],
)
def test_plan(tmp_path: Path, ks: str, expected: list[list[str]]) -> None:
    assert plan(tmp_path, ks) == expected


def test_post_body_is_kept_verbatim(tmp_path: Path) -> None:
    plan(tmp_path, '%post\necho "$HOME" `id -u`\n%end\n')
    assert (tmp_path / "ks-script-1").read_text() == 'echo "$HOME" `id -u`\n'
