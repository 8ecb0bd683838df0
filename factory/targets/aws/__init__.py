"""AWS behind the target interface: a thin adapter over factory.aws.promote (whose code stays where it is)."""

from factory.targets.aws.adapter import AwsTarget

__all__ = ["AwsTarget"]
