"""The testbed: a tiny, real, EL7-shaped install medium built from Debian packages for CI and demos.

Not anaconda: a busybox installer that applies a documented kickstart subset (docs/testbed.md).
"""

from factory.testbed.build import VOLUME_LABEL, Testbed, build_testbed

__all__ = ["VOLUME_LABEL", "Testbed", "build_testbed"]
