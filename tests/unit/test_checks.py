"""The checks table and the pure judgements tests/images makes on text read from the guest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from factory.errors import EXIT_VERIFY, VerifyError
from factory.spec import Spec
from factory.stages.verify import checks

SUITE = Path(__file__).resolve().parents[1] / "images"


def _suite_tests() -> set[str]:
    names = set()
    for module in SUITE.glob("test_*.py"):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name.removeprefix("test_"))
    return names


def test_every_check_has_a_test_and_every_test_is_a_check() -> None:
    assert _suite_tests() == checks.CHECK_NAMES


def test_check_names_are_unique() -> None:
    assert len(checks.CHECK_NAMES) == len(checks.CHECKS)


def _spec(tmp_path: Path, skip: list[dict[str, str]]) -> Spec:
    (tmp_path / "ks.cfg").write_text("text\n")
    return Spec.model_validate(
        {
            "name": "t",
            "os": "testbed",
            "media": {"builtin": "testbed", "volume_label": "T"},
            "kickstart": {"path": "ks.cfg"},
            "expect": {"skip": skip},
            "source": tmp_path / "t.yaml",
        }
    )


def test_known_skip_is_accepted_and_gives_its_reason(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"rule": "selinux_mode", "reason": "no SELinux on this OS"}])
    checks.require_known_skips(spec)
    assert checks.skip_reason(spec, "selinux_mode") == "skipped by t.yaml: no SELinux on this OS"
    assert checks.skip_reason(spec, "cloud_init") is None


def test_unknown_skip_is_a_verify_error_naming_it(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [{"rule": "cloud_init", "reason": "fine"}, {"rule": "selinux", "reason": "typo"}])
    with pytest.raises(VerifyError) as err:
        checks.require_known_skips(spec)
    assert "unknown check(s) selinux " in err.value.message
    assert err.value.exit_code == EXIT_VERIFY


@pytest.mark.parametrize(
    ("field", "state"),
    [
        pytest.param("!", "locked", id="bang"),
        pytest.param("!!", "locked", id="el-never-set"),
        pytest.param("*", "locked", id="star"),
        pytest.param("!$6$salt$hash", "locked", id="locked-hash"),
        pytest.param("$6$salt$abcdefgh", "hashed", id="sha512"),
        pytest.param("$5$salt$abcdefgh", "hashed", id="sha256"),
        pytest.param("$y$j9T$salt$hash", "hashed", id="yescrypt"),
        pytest.param("$1$salt$hash", "weak-hash", id="md5"),
        pytest.param("", "empty", id="empty"),
        pytest.param("hunter2", "cleartext", id="cleartext"),
    ],
)
def test_password_state(field: str, state: str) -> None:
    assert checks.password_state(field) == state


@pytest.mark.parametrize(
    ("field", "policy", "ok"),
    [
        pytest.param("!", "locked", True, id="locked-wants-locked"),
        pytest.param("$6$s$h", "locked", False, id="hash-wants-locked"),
        pytest.param("$6$s$h", "hashed", True, id="hash-wants-hashed"),
        pytest.param("!$6$s$h", "hashed", True, id="locked-hash-wants-hashed"),
        pytest.param("!", "hashed", False, id="bare-lock-wants-hashed"),
        pytest.param("*", "locked-or-hashed", True, id="star-either"),
        pytest.param("$6$s$h", "locked-or-hashed", True, id="hash-either"),
        pytest.param("", "locked-or-hashed", False, id="empty-either"),
        pytest.param("secret", "locked-or-hashed", False, id="cleartext-either"),
        pytest.param("$1$s$h", "locked-or-hashed", False, id="md5-either"),
    ],
)
def test_root_password_ok(field: str, policy: str, ok: bool) -> None:
    assert checks.root_password_ok(field, policy) is ok


def test_shadow_field_and_unsafe_accounts() -> None:
    shadow = "root:!:19000::::::\ndaemon:*:19000:0:99999:7:::\nbob::19000::::::\neve:pw123:1::::::\n"
    assert checks.shadow_field(shadow, "root") == "!"
    assert checks.shadow_field(shadow, "nobody") is None
    assert checks.unsafe_accounts(shadow) == ["bob", "eve"]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param("rootpw --iscrypted $6$s$h\n", [], id="iscrypted"),
        pytest.param("rootpw --lock\n", [], id="lock-only"),
        pytest.param("rootpw --lock --iscrypted $6$s$h\n", [], id="locked-hash"),
        pytest.param("text\nrootpw secret\n", [2], id="plain-value"),
        pytest.param("rootpw --plaintext secret\n", [1], id="plaintext-flag"),
        pytest.param("# rootpw secret\n", [], id="comment"),
        pytest.param("user --name=bob --password=secret\n", [1], id="user-password"),
        pytest.param("user --name=bob --password=$6$s$h --iscrypted\n", [], id="user-iscrypted"),
        pytest.param("user --name=bob --groups=wheel\n", [], id="user-no-password"),
    ],
)
def test_cleartext_kickstart_lines(text: str, lines: list[int]) -> None:
    assert checks.cleartext_kickstart_lines(text) == lines


@pytest.mark.parametrize(
    ("version", "flavour"),
    [
        pytest.param("3.10.0-327.el7.x86_64", "rhck", id="centos"),
        pytest.param("3.8.13-98.7.1.el7uek.x86_64", "uek", id="uek"),
        pytest.param("/boot/vmlinuz-4.1.12-37.4.1.el7uek.x86_64", "uek", id="grubby-path"),
    ],
)
def test_kernel_flavour(version: str, flavour: str) -> None:
    assert checks.kernel_flavour(version) == flavour


def test_console_args() -> None:
    cmdline = "BOOT_IMAGE=/vmlinuz ro console=tty0 console=ttyS0,115200n8 quiet\n"
    assert checks.console_args(cmdline) == ["tty0", "ttyS0,115200n8"]


def test_df_size_bytes() -> None:
    out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda1 8377344 1200 8376144 1% /\n"
    assert checks.df_size_bytes(out) == 8377344 * 1024


def test_df_size_bytes_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unexpected df output"):
        checks.df_size_bytes("df: /nope: No such file or directory\n")


@pytest.mark.parametrize(
    ("listing", "name", "found"),
    [
        ("kernel/drivers/nvme/host/nvme.ko\nkernel/fs/ext4/ext4.ko\n", "nvme", True),
        ("kernel/drivers/nvme/host/nvme-core.ko\n", "nvme", False),
        ("kernel/drivers/nvme/host/nvme-core.ko\n", "nvme_core", True),
        (
            "-rw-r--r--   1 root root 38104 Nov 19  2015 "
            "usr/lib/modules/3.10.0-327.el7.x86_64/kernel/drivers/block/nvme.ko\n",
            "nvme",
            True,
        ),
        ("/lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/net/ethernet/amazon/ena/ena.ko\n", "ena", True),
        ("lib/modules/5.14.0/kernel/drivers/net/ethernet/amazon/ena/ena.ko.xz\n", "ena", True),
        ("kernel/drivers/net/ethernet/intel/e1000/e1000.ko\nenable.ko.txt\n", "ena", False),
        ("", "ena", False),
    ],
    ids=[
        "builtin-nvme",
        "nvme-core-is-not-nvme",
        "dash-underscore",
        "lsinitrd-el7",
        "find-ena",
        "xz-compressed",
        "no-ena",
        "empty",
    ],
)
def test_module_listed(listing: str, name: str, found: bool) -> None:
    assert checks.module_listed(listing, name) is found


def test_initramfs_candidates_and_list_command() -> None:
    kernel = "3.10.0-327.el7.x86_64"
    assert checks.initramfs_candidates(kernel)[:2] == (
        f"/boot/initramfs-{kernel}.img",
        f"/boot/initrd.img-{kernel}",
    )
    command = checks.initramfs_list_command("/boot/initrd.img-6.1 x")
    assert "lsinitrd '/boot/initrd.img-6.1 x'" in command
    assert "busybox cpio -t" in command
