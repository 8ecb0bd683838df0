"""The container registry target: the `oci` export pushed with skopeo (factory.targets.registry.target)."""

from __future__ import annotations

from factory.targets.registry.target import RegistryTarget

__all__ = ["RegistryTarget"]
