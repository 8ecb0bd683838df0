"""vSphere: the OVA imported as a template (ImportVApp + NFC upload), tagged, older templates retired."""

from factory.targets.vsphere.target import VsphereTarget

__all__ = ["VsphereTarget"]
