"""Publishing targets behind one interface (base.Target), looked up by their key in the spec.

`registry` maps a spec key to the module:class that implements it; modules are imported only when used,
so a build that publishes nowhere never imports boto3, pyvmomi or openstacksdk. A new target adds one
line here and a package beside aws/vsphere/openstack.
"""

from __future__ import annotations

import importlib

from factory.errors import UsageError
from factory.spec import Spec
from factory.targets.base import Target

# spec key -> "module:Class"; the order is the order targets publish in and tables show.
REGISTRY: dict[str, str] = {
    "aws": "factory.targets.aws.adapter:AwsTarget",
    "vsphere": "factory.targets.vsphere:VsphereTarget",
    "openstack": "factory.targets.openstack:OpenstackTarget",
    "registry": "factory.targets.registry:RegistryTarget",
}


def get(key: str) -> Target:
    """The target for a spec key; an unknown key is a usage error naming the known ones."""
    try:
        where = REGISTRY[key]
    except KeyError:
        raise UsageError(f"unknown target {key!r} (known: {', '.join(REGISTRY)})") from None
    module_name, _, cls_name = where.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    target: Target = cls()
    return target


def configured(spec: Spec) -> list[str]:
    """The keys of every target the spec names (has a section for), in registry order."""
    return [key for key in REGISTRY if getattr(spec, key, None) is not None]


__all__ = ["REGISTRY", "configured", "get"]
