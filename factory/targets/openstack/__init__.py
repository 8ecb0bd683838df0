"""OpenStack: the qcow2 (or raw) export as a Glance image in every cloud the spec names."""

from factory.targets.openstack.target import OpenstackTarget

__all__ = ["OpenstackTarget"]
