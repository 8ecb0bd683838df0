"""Error classes: a user-facing one-line message, an exit code, and the artifacts to look at.

The exit codes are part of the command-line contract (see README, "Exit codes").
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FINDINGS = 1  # validation findings, failed verification: the input was read, the answer is "no"
EXIT_USAGE = 2  # bad command line, unreadable/invalid file, invalid spec
EXIT_TOOL = 3  # a host tool is missing or failed (qemu, qemu-img, xorriso...)
EXIT_MEDIA = 4  # ISO download or checksum failure
EXIT_INSTALL = 5  # the install failed (classified by the monitor)
EXIT_VERIFY = 6  # the image did not boot or failed its acceptance tests
EXIT_EXPORT = 7
EXIT_AWS = 8  # AWS credentials, upload or promotion failure
# The publishing family: 8 AWS (above), 9 several targets failed or a target-independent publishing problem,
# 10 vSphere, 11 OpenStack; later targets take the next free codes.
EXIT_PUBLISH = 9
EXIT_VSPHERE = 10
EXIT_OPENSTACK = 11
# Sealing: the stage between verify (6) and export (7) had no code of its own; the next free one.
EXIT_SEAL = 12  # sealing failed: the cleanup, the power-off or the offline re-check of the sealed image
EXIT_INTERRUPTED = 130


class FactoryError(Exception):
    """Base of every error the user sees as one line; `exit_code` is what the process returns."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, artifacts: tuple[Path, ...] = (), details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.artifacts = artifacts
        # Extra lines (e.g. the last lines of a transcript) shown under the one-line message.
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(FactoryError):
    exit_code = EXIT_USAGE


class InputError(FactoryError):
    """A file given by the user is missing, unreadable, empty, binary or invalid."""

    exit_code = EXIT_USAGE


class SpecError(InputError):
    """An invalid spec; `problems` holds every problem as 'field.path: what is wrong'."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        first = problems[0] if problems else "invalid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{path}: {first}{more}", details="\n".join(f"{path}: {p}" for p in problems[1:]))
        self.path = path
        self.problems = problems


class ValidationError(FactoryError):
    """The build's kickstart has findings (exit 1, as `factory validate` with findings)."""

    exit_code = EXIT_FINDINGS


class ToolError(FactoryError):
    """A host program is missing or exited non-zero; the message carries its stderr."""

    exit_code = EXIT_TOOL


class MediaError(FactoryError):
    exit_code = EXIT_MEDIA


class InstallError(FactoryError):
    """A classified install failure: `kind` is a stable name (traceback, kickstart-error, panic, ...)."""

    exit_code = EXIT_INSTALL

    def __init__(
        self, kind: str, message: str, *, artifacts: tuple[Path, ...] = (), details: str = ""
    ) -> None:
        super().__init__(f"install failed ({kind}): {message}", artifacts=artifacts, details=details)
        self.kind = kind


class VerifyError(FactoryError):
    exit_code = EXIT_VERIFY


class ComplianceError(VerifyError):
    """The compliance scan found failing rules the spec does not waive (exit 6, like any failed check)."""


class SealError(FactoryError):
    exit_code = EXIT_SEAL


class ExportError(FactoryError):
    exit_code = EXIT_EXPORT


class AwsError(FactoryError):
    exit_code = EXIT_AWS


class PublishError(FactoryError):
    """A publishing target failed (base of every target's error), or several did."""

    exit_code = EXIT_PUBLISH


class VsphereError(PublishError):
    exit_code = EXIT_VSPHERE


class OpenstackError(PublishError):
    exit_code = EXIT_OPENSTACK


class RegistryError(PublishError):
    """A container registry refused, was unreachable, or lost a tag (exit 9, as any publishing target)."""


class Interrupted(FactoryError):
    exit_code = EXIT_INTERRUPTED
