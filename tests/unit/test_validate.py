"""The kickstart gate: the broken-kickstart corpus with exact file:line, the real kickstarts, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.cli import main
from factory.errors import SpecError, UsageError
from factory.spec import load_spec
from factory.stages.validate.flatten import KickstartInputError
from factory.stages.validate.rules import RULE_NAMES
from factory.stages.validate.validate import validate_file, validate_spec

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "kickstarts"

# (kickstart under tests/data/kickstarts, version, [(file with the problem, line, rule), ...]); line 0 is
# "the file as a whole" (something is missing).
CORPUS = [
    ("good.ks", "RHEL7", []),
    ("good-with-include.ks", "RHEL7", []),
    ("syntax-unknown-command.ks", "RHEL7", [("syntax-unknown-command.ks", 4, "syntax")]),
    ("syntax-bad-option.ks", "RHEL7", [("syntax-bad-option.ks", 2, "syntax")]),
    (
        "syntax-two-errors.ks",
        "RHEL7",
        [("syntax-two-errors.ks", 2, "syntax"), ("syntax-two-errors.ks", 7, "syntax")],
    ),
    ("syntax-in-include.ks", "RHEL7", [("inc/bad-option.ks", 3, "syntax")]),
    ("syntax-nested-include.ks", "RHEL7", [("inc/bad-command.ks", 2, "syntax")]),
    ("syntax-missing-end.ks", "RHEL7", [("syntax-missing-end.ks", 8, "syntax")]),
    ("syntax-unknown-section.ks", "RHEL7", [("syntax-unknown-section.ks", 10, "syntax")]),
    ("wrong-version-command.ks", "RHEL7", [("wrong-version-command.ks", 4, "syntax")]),
    ("wrong-version-option.ks", "RHEL7", [("wrong-version-option.ks", 3, "syntax")]),
    ("wrong-version-section.ks", "RHEL7", [("wrong-version-section.ks", 10, "syntax")]),
    ("deprecated-option.ks", "RHEL7", [("deprecated-option.ks", 10, "deprecated")]),
    ("network-onboot-missing.ks", "RHEL7", [("network-onboot-missing.ks", 2, "network-onboot")]),
    ("network-onboot-no.ks", "RHEL7", [("network-onboot-no.ks", 2, "network-onboot")]),
    ("network-none.ks", "RHEL7", [("network-none.ks", 0, "network-onboot")]),
    ("no-shutdown-reboot.ks", "RHEL7", [("no-shutdown-reboot.ks", 6, "no-shutdown")]),
    ("no-shutdown-halt.ks", "RHEL7", [("no-shutdown-halt.ks", 6, "no-shutdown")]),
    ("no-shutdown-none.ks", "RHEL7", [("no-shutdown-none.ks", 0, "no-shutdown")]),
    ("graphical-install.ks", "RHEL7", [("graphical-install.ks", 1, "graphical-install")]),
    ("graphical-install-default.ks", "RHEL7", [("graphical-install-default.ks", 0, "graphical-install")]),
    ("cleartext-rootpw-plaintext.ks", "RHEL7", [("cleartext-rootpw-plaintext.ks", 3, "cleartext-rootpw")]),
    ("cleartext-rootpw-bare.ks", "RHEL7", [("cleartext-rootpw-bare.ks", 3, "cleartext-rootpw")]),
    ("cleartext-rootpw-missing.ks", "RHEL7", [("cleartext-rootpw-missing.ks", 0, "cleartext-rootpw")]),
    ("cleartext-user.ks", "RHEL7", [("cleartext-user.ks", 4, "cleartext-rootpw")]),
    ("sshd-not-enabled.ks", "RHEL7", [("sshd-not-enabled.ks", 4, "sshd-not-enabled")]),
    ("sshd-disabled.ks", "RHEL7", [("sshd-disabled.ks", 4, "sshd-not-enabled")]),
    ("sshd-no-services.ks", "RHEL7", [("sshd-no-services.ks", 0, "sshd-not-enabled")]),
    ("no-serial-console.ks", "RHEL7", [("no-serial-console.ks", 5, "no-serial-console")]),
    (
        "no-serial-console-no-bootloader.ks",
        "RHEL7",
        [("no-serial-console-no-bootloader.ks", 0, "no-serial-console")],
    ),
    ("post-no-erroronfail.ks", "RHEL7", [("post-no-erroronfail.ks", 7, "post-no-erroronfail")]),
    ("post-no-log.ks", "RHEL7", [("post-no-log.ks", 7, "post-no-log")]),
    ("oscap-addon-unknown-key.ks", "RHEL7", [("oscap-addon-unknown-key.ks", 9, "oscap-addon")]),
    (
        "post-bare.ks",
        "RHEL7",
        [("post-bare.ks", 7, "post-no-erroronfail"), ("post-bare.ks", 7, "post-no-log")],
    ),
    (
        "rule-in-include.ks",
        "RHEL7",
        [("inc/post-bare.ks", 2, "post-no-erroronfail"), ("inc/post-bare.ks", 2, "post-no-log")],
    ),
    # The same file is right for a newer version: the verdict follows the version asked for.
    ("wrong-version-option.ks", "F37", []),
]


def found(report: Any) -> list[tuple[str, int, str]]:
    return [(str(f.file.relative_to(DATA)), f.line, f.rule) for f in report.findings]


@pytest.mark.parametrize(("name", "version", "expected"), CORPUS, ids=[f"{c[0]}-{c[1]}" for c in CORPUS])
def test_corpus(name: str, version: str, expected: list[tuple[str, int, str]]) -> None:
    report = validate_file(DATA / name, version)
    assert found(report) == sorted(expected)
    for finding in report.findings:
        assert finding.message and "\n" not in finding.message
        # The flattened line number must not leak into the text: the finding carries the real one.
        assert " on line " not in finding.message


def test_every_policy_rule_has_a_corpus_case() -> None:
    covered = {rule for _, _, expected in CORPUS for _, _, rule in expected}
    # uek-default-vm-import needs a spec: covered by test_spec_rules below.
    assert RULE_NAMES - {"uek-default-vm-import"} <= covered


def test_disabled_rule_is_not_reported() -> None:
    report = validate_file(DATA / "post-bare.ks", disabled=["post-no-log"])
    assert found(report) == [("post-bare.ks", 7, "post-no-erroronfail")]
    assert report.disabled == ("post-no-log",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "RHEL99"}, "unknown kickstart version 'RHEL99'"),
        ({"disabled": ["no-such-rule"]}, "unknown rule 'no-such-rule'"),
    ],
    ids=["unknown-version", "unknown-disabled-rule"],
)
def test_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_file(DATA / "good.ks", **kwargs)


@pytest.mark.parametrize("name", ["centos72", "ol72"])
def test_real_kickstarts_are_clean(name: str) -> None:
    report = validate_spec(load_spec(REPO / "specs" / f"{name}.yaml"))
    assert report.findings == ()
    assert len(report.files) > 1  # the common parts came in through %include


# --- specs: the rule that needs the spec, disabled_rules, the kernel switch -------------------------------


def write_spec(tmp_path: Path, base: str, **changes: Any) -> Path:
    raw = yaml.safe_load((REPO / "specs" / f"{base}.yaml").read_text())
    raw["kickstart"]["path"] = str(REPO / "kickstarts" / f"{base}.ks")
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / f"{base}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


UEK = str(REPO / "kickstarts" / "common" / "kernel-uek.ks")

SPEC_CASES = [
    pytest.param("ol72", {}, [], id="ol72-rhck-vm-import-clean"),
    pytest.param(
        "ol72", {"keep_uek": True}, [(UEK, 5, "uek-default-vm-import")], id="ol72-keep-uek-vm-import"
    ),
    pytest.param(
        "ol72",
        {"keep_uek": True, "aws__upload": "ebs-direct"},
        [],
        id="ol72-keep-uek-ebs-direct-clean",
    ),
    pytest.param(
        "ol72",
        {
            "keep_uek": True,
            "kickstart__disabled_rules": [
                {"rule": "uek-default-vm-import", "reason": "AWS accepts UEK 4 now"}
            ],
        },
        [],
        id="ol72-keep-uek-rule-disabled",
    ),
    pytest.param("centos72", {"os": "oraclelinux"}, [], id="no-kernel-uek-installed-is-not-uek"),
]


@pytest.mark.parametrize(("base", "changes", "expected"), SPEC_CASES)
def test_spec_rules(
    tmp_path: Path, base: str, changes: dict[str, Any], expected: list[tuple[str, int, str]]
) -> None:
    report = validate_spec(load_spec(write_spec(tmp_path, base, **changes)))
    assert [(str(f.file), f.line, f.rule) for f in report.findings] == expected


def test_keep_uek_serves_the_uek_kernel(tmp_path: Path) -> None:
    from factory.stages.validate.flatten import flatten_for_spec

    rhck = flatten_for_spec(load_spec(write_spec(tmp_path, "ol72")))
    uek = flatten_for_spec(load_spec(write_spec(tmp_path, "ol72", keep_uek=True)))
    assert "-kernel-uek\n" in rhck.text and "\nkernel-uek\n" not in rhck.text
    assert "\nkernel-uek\n" in uek.text and "-kernel-uek\n" not in uek.text


def test_keep_uek_without_the_kernel_switch_is_an_input_error(tmp_path: Path) -> None:
    # centos72.ks has no `%include common/kernel-rhck.ks` to swap.
    spec = load_spec(write_spec(tmp_path, "centos72", keep_uek=True))
    with pytest.raises(
        KickstartInputError, match=r"keep_uek: true, but .* no `%include common/kernel-rhck\.ks`"
    ):
        validate_spec(spec)


def test_unknown_disabled_rule_in_spec_names_the_field(tmp_path: Path) -> None:
    rules = [
        {"rule": "post-no-log", "reason": "logs go elsewhere"},
        {"rule": "no-such-rule", "reason": "typo"},
    ]
    spec = load_spec(write_spec(tmp_path, "centos72", kickstart__disabled_rules=rules))
    with pytest.raises(SpecError, match=r"kickstart\.disabled_rules\.1\.rule: unknown rule 'no-such-rule'"):
        validate_spec(spec)


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_no_arguments_validates_every_spec(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(REPO)
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    count = len(list((REPO / "specs").glob("*.yaml")))
    assert out.strip().splitlines()[-1] == f"{count} kickstart(s) clean"


def test_cli_human_output(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(DATA)  # paths print relative to the cwd
    assert main(["validate", "post-bare.ks", "rule-in-include.ks", "good.ks"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("post-bare.ks:7: [post-no-erroronfail] %post without --erroronfail")
    assert lines[2].startswith("inc/post-bare.ks:2: [post-no-erroronfail] ")
    assert lines[-1] == "4 problem(s) in 2 of 3 kickstart(s)"


def test_cli_whole_file_findings_have_no_line(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(DATA)
    assert main(["validate", "network-none.ks"]) == 1
    assert capsys.readouterr().out.startswith("network-none.ks: [network-onboot] no network command")


def test_cli_json(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(DATA)
    assert main(["validate", "--format", "json", "syntax-in-include.ks", "network-none.ks"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data == [
        {
            "file": "inc/bad-option.ks",
            "line": 3,
            "rule": "syntax",
            "severity": "error",
            "message": "Unexpected arguments to lang command: ['--nosuchopt']",
        },
        {
            "file": "network-none.ks",
            "line": 0,
            "rule": "network-onboot",
            "severity": "error",
            "message": "no network command: add `network --bootproto=dhcp --device=eth0 --onboot=yes`",
        },
    ]


def test_cli_json_clean_is_an_empty_list(capsys: Any) -> None:
    assert main(["validate", "--format", "json", str(DATA / "good.ks")]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_version_option(capsys: Any) -> None:
    assert main(["validate", str(DATA / "wrong-version-option.ks")]) == 1
    assert main(["validate", "--version", "F37", str(DATA / "wrong-version-option.ks")]) == 0


def test_cli_list_rules(capsys: Any) -> None:
    assert main(["validate", "--list-rules"]) == 0
    names = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert names == RULE_NAMES | {"syntax", "deprecated"}


def _spec_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _bad_input(tmp_path: Path, case: str) -> list[str]:
    """Build one bad input in tmp_path; return the CLI arguments."""
    ks = tmp_path / "x.ks"
    if case == "missing":
        return [str(ks)]
    if case == "directory":
        ks.mkdir()
        return [str(ks)]
    if case == "empty":
        ks.write_text("")
    elif case == "binary":
        ks.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00")
    elif case == "include-loop":
        ks.write_text("text\n%include y.ks\n")
        (tmp_path / "y.ks").write_text("%include x.ks\n")
    elif case == "missing-include":
        ks.write_text("text\n\n%include nowhere.ks\n")
    elif case == "spec-missing-kickstart":
        spec = write_spec(tmp_path, "centos72")
        spec.write_text(spec.read_text().replace(str(REPO / "kickstarts" / "centos72.ks"), "gone.ks"))
        return [str(spec)]
    elif case == "spec-unknown-field":
        return [str(write_spec(tmp_path, "centos72", vm__colour="blue"))]
    elif case == "spec-unknown-disabled-rule":
        rules = [{"rule": "nope", "reason": "typo"}]
        return [str(write_spec(tmp_path, "centos72", kickstart__disabled_rules=rules))]
    elif case == "unknown-version":
        ks.write_text("text\n")
        return ["--version", "RHEL99", str(ks)]
    return [str(ks)]


BAD_INPUTS = [
    ("missing", "x.ks: kickstart not found"),
    ("directory", "x.ks: kickstart is a directory"),
    ("empty", "x.ks: kickstart is empty"),
    ("binary", "x.ks: kickstart is a binary file"),
    ("include-loop", "y.ks:1: %include loop: "),
    ("missing-include", "x.ks:3: %include nowhere.ks: file not found"),
    ("spec-missing-kickstart", "kickstart.path: "),
    ("spec-unknown-field", "vm.colour: unknown field"),
    ("spec-unknown-disabled-rule", "kickstart.disabled_rules.0.rule: unknown rule 'nope'"),
    ("unknown-version", "unknown kickstart version 'RHEL99'"),
]


@pytest.mark.parametrize(("case", "message"), BAD_INPUTS, ids=[c for c, _ in BAD_INPUTS])
def test_cli_bad_input(tmp_path: Path, capsys: Any, case: str, message: str) -> None:
    args = _bad_input(tmp_path, case)
    assert main(["validate", *args]) == 2
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1, errors
    assert errors[0].startswith("error: ")
    assert message in errors[0]
    assert "Traceback" not in captured.err + captured.out


def test_cli_unreadable(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, where chmod 000 does not stop reading: make the read itself fail.
    ks = tmp_path / "x.ks"
    ks.write_text("text\n")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert main(["validate", str(ks)]) == 2
    assert "kickstart is not readable" in capsys.readouterr().err


def test_cli_bad_input_does_not_hide_other_verdicts(tmp_path: Path, capsys: Any) -> None:
    assert main(["validate", str(tmp_path / "missing.ks"), str(DATA / "post-no-log.ks")]) == 2
    captured = capsys.readouterr()
    assert "[post-no-log]" in captured.out
    assert "kickstart not found" in captured.err


def test_parses_do_not_share_state() -> None:
    # Handlers are copies of one pristine handler (for speed): one kickstart's commands must not show up
    # in the next one's verdict, in either order.
    assert validate_file(DATA / "good.ks").findings == ()
    assert found(validate_file(DATA / "network-none.ks")) == [("network-none.ks", 0, "network-onboot")]
    assert found(validate_file(DATA / "syntax-bad-option.ks")) == [("syntax-bad-option.ks", 2, "syntax")]
    assert validate_file(DATA / "good.ks").findings == ()


def test_ssh_service_name_comes_from_the_spec(tmp_path: Path) -> None:
    # A spec whose image calls the service "ssh" (the Debian-based testbed) needs --enabled=ssh, not sshd.
    spec = load_spec(write_spec(tmp_path, "centos72", expect__ssh_service="ssh"))
    report = validate_spec(spec)
    assert [(f.file.name, f.line, f.rule) for f in report.findings] == [("base.ks", 20, "sshd-not-enabled")]
    assert "add `services --enabled=ssh`" in report.findings[0].message


# ------------------------------------------------------------------ %include written by %pre
PRE_INCLUDE_KS = """text
network --bootproto=dhcp --device=eth0 --onboot=yes
rootpw --lock
services --enabled=sshd
bootloader --append="console=ttyS0,115200 console=tty0"
poweroff
%pre --log=/tmp/pre.log
disk=$(ls /dev/vd? | head -n1)
cat > /tmp/part-include <<EOF
clearpart --all --initlabel --drives=${disk#/dev/}
part / --fstype=xfs --size=1 --grow
EOF
%end
%include /tmp/part-include
%post --erroronfail --log=/root/post.log
true
%end
"""
NOTE = "%include /tmp/part-include: written at install time by %pre at line 7: not checked"


def test_pre_written_include_is_a_note_and_the_kickstart_is_clean(tmp_path: Path, capsys: Any) -> None:
    ks = tmp_path / "pre.ks"
    ks.write_text(PRE_INCLUDE_KS)
    report = validate_file(ks)
    assert report.findings == ()
    assert [(n.line, n.rule, n.severity, n.message) for n in report.notes] == [
        (14, "pre-include", "note", NOTE)
    ]
    assert main(["validate", str(ks)]) == 0  # a note does not change the exit status
    out = capsys.readouterr().out
    assert f"pre.ks:14: note: [pre-include] {NOTE}" in out
    assert "1 kickstart(s) clean; 1 note(s)" in out


def test_pre_written_include_note_in_json(tmp_path: Path, capsys: Any) -> None:
    ks = tmp_path / "pre.ks"
    ks.write_text(PRE_INCLUDE_KS)
    assert main(["validate", "--format", "json", str(ks)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(d["line"], d["rule"], d["severity"], d["message"]) for d in doc] == [
        (14, "pre-include", "note", NOTE)
    ]


def test_pre_written_include_every_rule_still_runs(tmp_path: Path, capsys: Any) -> None:
    # The rest of the kickstart is checked: a clear-text password and a %post without --log are found,
    # a missing `network` says the unchecked file might hold it, and the exit status is that of findings.
    ks = tmp_path / "pre.ks"
    text = PRE_INCLUDE_KS.replace("rootpw --lock", "rootpw hunter2").replace(" --log=/root/post.log", "")
    ks.write_text(text.replace("network --bootproto=dhcp --device=eth0 --onboot=yes\n", ""))
    report = validate_file(ks)
    assert sorted((f.line, f.rule) for f in report.findings) == [
        (0, "network-onboot"),
        (2, "cleartext-rootpw"),
        (14, "post-no-log"),
    ]
    (network,) = [f for f in report.findings if f.rule == "network-onboot"]
    assert network.message.endswith(
        "(if /tmp/part-include, written by %pre, provides it: disable network-onboot with that reason)"
    )
    assert len(report.notes) == 1
    assert main(["validate", str(ks)]) == 1
    out = capsys.readouterr().out
    assert "note: [pre-include]" in out and "3 problem(s) in 1 of 1 kickstart(s); 1 note(s)" in out


def test_pre_written_include_pykickstart_still_parses_the_rest(tmp_path: Path) -> None:
    # A syntax error after the unchecked include is still found, at its real line.
    ks = tmp_path / "pre.ks"
    ks.write_text(PRE_INCLUDE_KS.replace("poweroff\n", "poweroff\nnosuchcommand\n"))
    assert [(f.line, f.rule) for f in validate_file(ks).findings] == [(7, "syntax")]


def test_missing_include_no_pre_writes_is_exit_2(tmp_path: Path, capsys: Any) -> None:
    ks = tmp_path / "pre.ks"
    ks.write_text(PRE_INCLUDE_KS.replace("%include /tmp/part-include", "%include /tmp/part-inclde"))
    assert main(["validate", str(ks)]) == 2
    err = capsys.readouterr().err
    assert "pre.ks:14: %include /tmp/part-inclde: file not found" in err
    assert "no %pre of this kickstart writes it" in err
