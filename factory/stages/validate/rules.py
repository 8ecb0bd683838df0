"""The policy lint: named rules over pykickstart's parsed handler, each message saying the fix.

A rule is a row of RULES: its name (what specs use in `kickstart.disabled_rules`), a one-line description,
and a check that yields (flattened line, message). Line 0 means "the kickstart as a whole" (something is
missing); the validator maps other lines back to the real file:line.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pykickstart import constants

from factory.spec import Spec, UploadMethod
from factory.stages.compliance import scap
from factory.stages.validate import oscap_addon
from factory.stages.validate.flatten import Flattened

Hit = tuple[int, str]


@dataclass(frozen=True)
class Context:
    """What a check looks at: pykickstart's handler (typed Any: pykickstart has no type hints)."""

    handler: Any
    flat: Flattened
    spec: Spec | None

    def line_args(self, line_no: int) -> list[str]:
        """The shell words of flattened line `line_no`, for the few options pykickstart does not keep."""
        lines = self.flat.text.splitlines()
        if not 1 <= line_no <= len(lines):
            return []
        try:
            return shlex.split(lines[line_no - 1], comments=True)
        except ValueError:
            return []


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[Context], Iterator[Hit]]
    # Rules that need the spec (e.g. its upload method) are skipped for a bare kickstart.
    needs_spec: bool = False


def _lineno(obj: Any) -> int:
    return int(getattr(obj, "lineno", 0) or 0)


def network_onboot(ctx: Context) -> Iterator[Hit]:
    devices = ctx.handler.network.network
    if not devices:
        yield 0, "no network command: add `network --bootproto=dhcp --device=eth0 --onboot=yes`"
        return
    for nd in devices:
        # pykickstart defaults onboot to True, but EL 7's installer leaves an interface down at boot unless
        # the line says --onboot=yes: look at the words actually written.
        written = any(a == "--onboot" or a.startswith("--onboot=") for a in ctx.line_args(_lineno(nd)))
        if not nd.onboot or not written:
            yield (
                _lineno(nd),
                (
                    f"network {nd.device or '(first device)'} is not started at boot: add --onboot=yes "
                    "(EL 7 otherwise boots with networking off)"
                ),
            )


def no_shutdown(ctx: Context) -> Iterator[Hit]:
    action = ctx.handler.reboot.action
    if action == constants.KS_SHUTDOWN:
        return
    how = {constants.KS_REBOOT: "reboot", constants.KS_WAIT: "halt"}.get(action, "no shutdown command")
    # reboot would boot the fresh, unsealed disk inside the build VM and the builder would not see the
    # install end; it is acceptable only if QEMU runs with -no-reboot, and then the spec says so by disabling
    # this rule with that reason.
    yield (
        _lineno(ctx.handler.reboot),
        (
            f"{how}: add `poweroff` (or `shutdown`) so the builder sees the install end when QEMU exits; "
            "reboot is acceptable only when the VM runs with -no-reboot (disable this rule with that reason)"
        ),
    )


def graphical_install(ctx: Context) -> Iterator[Hit]:
    mode = ctx.handler.displaymode
    if mode.displayMode in (constants.DISPLAY_MODE_TEXT, constants.DISPLAY_MODE_CMDLINE):
        return
    what = (
        "graphical install" if mode.displayMode == constants.DISPLAY_MODE_GRAPHICAL else "no `text` command"
    )
    yield _lineno(mode), f"{what}: add `text` (the builder drives a headless VM over its serial console)"


def cleartext_rootpw(ctx: Context) -> Iterator[Hit]:
    rootpw = ctx.handler.rootpw
    if not rootpw.seen:
        yield (
            0,
            (
                "no rootpw: the installer stops to ask for one; "
                "add `rootpw --lock` or `rootpw --iscrypted HASH`"
            ),
        )
    elif rootpw.password and not rootpw.isCrypted:
        yield (
            _lineno(rootpw),
            (
                "root password in clear text: use `rootpw --lock` or `rootpw --iscrypted HASH` "
                "(a SHA-512 hash, e.g. from `openssl passwd -6`)"
            ),
        )
    for user in ctx.handler.user.userList:
        if user.password and not user.isCrypted:
            yield _lineno(user), f"user {user.name} has a clear-text password: use --lock or --iscrypted HASH"


def sshd_not_enabled(ctx: Context) -> Iterator[Hit]:
    # The SSH service's name comes from the spec when there is one (the Debian-based testbed calls it ssh).
    name = ctx.spec.expect.ssh_service if ctx.spec is not None else "sshd"
    services = ctx.handler.services
    if name in services.disabled:
        yield _lineno(services), f"services --disabled lists {name}: remove it and add --enabled={name}"
    elif name not in services.enabled:
        yield (
            _lineno(services),
            (f"{name} is not enabled: add `services --enabled={name}` (verify and AWS log in by SSH)"),
        )


def uek_is_default(ctx: Context) -> bool:
    """True when an Oracle Linux install keeps UEK as its default kernel: it is not excluded in %packages
    and no %post switches the default with grubby."""
    if "kernel-uek" in ctx.handler.packages.excludedList:
        return False
    return not any(
        s.type == constants.KS_SCRIPT_POST and "grubby" in s.script and "--set-default" in s.script
        for s in ctx.handler.scripts
    )


def _uek_line(ctx: Context) -> int:
    """The line that installs UEK (`kernel-uek` in %packages), else the first %packages header, else 0."""
    lines = ctx.flat.text.splitlines()
    for wanted in ("kernel-uek", "%packages"):
        for number, line in enumerate(lines, start=1):
            if line.split()[:1] == [wanted]:
                return number
    return 0


def uek_default_vm_import(ctx: Context) -> Iterator[Hit]:
    spec = ctx.spec
    if spec is None or spec.os != "oraclelinux" or spec.aws is None:
        return
    if spec.aws.upload is UploadMethod.VM_IMPORT and uek_is_default(ctx):
        why = "keep_uek: true serves common/kernel-uek.ks" if spec.keep_uek else "kernel-uek is not excluded"
        yield (
            _uek_line(ctx),
            (
                f"UEK is the default kernel ({why}) but aws.upload is vm-import, which AWS rejects for UEK: "
                "set keep_uek: false (exclude -kernel-uek) or use aws.upload: ebs-direct"
            ),
        )


def no_serial_console(ctx: Context) -> Iterator[Hit]:
    bootloader = ctx.handler.bootloader
    words = (bootloader.appendLine or "").split()
    if not any(w.startswith("console=ttyS0") for w in words):
        yield (
            _lineno(bootloader),
            (
                'the installed kernel has no serial console: add `bootloader --append="console=ttyS0,115200 '
                'console=tty0"` (the verify stage and the AWS system log read ttyS0)'
            ),
        )


def _posts(ctx: Context) -> Iterator[Any]:
    return (s for s in ctx.handler.scripts if s.type == constants.KS_SCRIPT_POST)


def post_no_erroronfail(ctx: Context) -> Iterator[Hit]:
    for script in _posts(ctx):
        if not script.errorOnFail:
            yield _lineno(script), "%post without --erroronfail: a failing script would still give an image"


def post_no_log(ctx: Context) -> Iterator[Hit]:
    for script in _posts(ctx):
        if not script.logfile:
            yield _lineno(script), "%post without --log=/root/ks-post-NAME.log: its output would be lost"


def _scap_content(spec: Spec | None) -> scap.Content | None:
    """The SCAP content an `%addon org_fedora_oscap` of type scap-security-guide stands for, when it is on
    this host (else its ids cannot be checked here; the build's preflight installs it)."""
    if spec is None:
        return None
    path = spec.compliance_datastream() or scap.default_datastream(
        spec.os, scap.major_release(spec.os_release, spec.kickstart.version)
    )
    if path is None or not path.is_file():
        return None
    try:
        return scap.read_content(path)
    except (OSError, ValueError):
        return None  # the spec check says what is wrong with a given datastream


def oscap_addon_rule(ctx: Context) -> Iterator[Hit]:
    found = oscap_addon.sections(ctx.flat.text)
    if not found:
        return
    content = _scap_content(ctx.spec)
    expected = ctx.spec.compliance.profile if ctx.spec is not None and ctx.spec.compliance else None
    for section in found:
        yield from oscap_addon.problems(section, content, expected)


RULES: tuple[Rule, ...] = (
    Rule("network-onboot", "every network device says --onboot=yes", network_onboot),
    Rule("no-shutdown", "the install ends with poweroff/shutdown", no_shutdown),
    Rule("graphical-install", "the install runs in text (or cmdline) mode", graphical_install),
    Rule("cleartext-rootpw", "root (and user) passwords are locked or hashed", cleartext_rootpw),
    Rule("sshd-not-enabled", "sshd (the spec's expect.ssh_service) is enabled", sshd_not_enabled),
    Rule(
        "uek-default-vm-import",
        "Oracle Linux uploaded by vm-import boots the Red Hat compatible kernel",
        uek_default_vm_import,
        needs_spec=True,
    ),
    Rule("no-serial-console", "bootloader --append has console=ttyS0", no_serial_console),
    Rule("post-no-erroronfail", "every %post has --erroronfail", post_no_erroronfail),
    Rule("post-no-log", "every %post has --log", post_no_log),
    Rule(
        "oscap-addon",
        "%addon org_fedora_oscap holds only what anaconda's OpenSCAP add-on accepts, and its profile exists",
        oscap_addon_rule,
    ),
)

RULE_NAMES: frozenset[str] = frozenset(r.name for r in RULES)
