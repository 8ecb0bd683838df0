"""Stage `validate`: the spec's kickstart, flattened once, through pykickstart and the policy rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from factory.core import digest
from factory.errors import FactoryError, ValidationError
from factory.stages.base import BaseStage, Context

# The flattened kickstart, kept for the install and the build key (never recorded: it can hold hashes).
KICKSTART = "kickstart"


@dataclass(frozen=True)
class ValidateResult:
    findings: int
    kickstart_sha256: str = ""


class ValidateStage(BaseStage):
    name: ClassVar[str] = "validate"
    error: ClassVar[type[FactoryError]] = ValidationError
    needs_build: ClassVar[bool] = False
    result_type = ValidateResult

    def run(self, ctx: Context) -> ValidateResult:
        from factory.stages.validate import validate
        from factory.stages.validate.flatten import flatten_for_spec

        flat = flatten_for_spec(ctx.spec)
        ctx.scratch[KICKSTART] = flat
        report = validate.validate_flattened(ctx.spec, flat)
        if report.findings:
            first = report.findings[0]
            raise ValidationError(
                f"kickstart validation found {len(report.findings)} problem(s); first: "
                f"{first.where()}: [{first.rule}] {first.message} (run `factory validate`)"
            )
        return ValidateResult(findings=0, kickstart_sha256=digest.sha256_text(flat.text))


def kickstart_text(ctx: Context) -> str:
    """The flattened kickstart of this run (validate keeps it); flattened here only when validate did not
    run in this process (a single-stage command)."""
    from factory.stages.validate.flatten import flatten_for_spec

    flat = ctx.scratch.get(KICKSTART)
    if flat is None:
        flat = ctx.scratch[KICKSTART] = flatten_for_spec(ctx.spec)
    text: str = flat.text
    return text
