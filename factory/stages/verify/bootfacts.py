"""What a target boot told the guest, handed to tests/images as JSON (`--boot-facts PATH`).

The runner (factory.stages.verify.targets) writes one per target boot; the suite's target checks
(tests/images/test_target.py) compare the guest with it: the user and key cloud-init must have set up,
the hostname, the datasource its detection must pick, the disk the root must have grown to, the
network the DHCP address must be in, and the build key that must let nobody in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from factory.core.record import atomic_write_text


@dataclass(frozen=True)
class BootFacts:
    boot: str
    # Empty for a boot without metadata (metal): the suite logs in as root with the build key.
    user: str = ""
    public_key: str = ""
    hostname: str = ""
    # cloud-init's name for the datasource its detection must pick (Ec2, ConfigDrive, OVF).
    datasource: str = ""
    # The root file system must be at least this big after growpart/resizefs (0: not checked).
    min_root_bytes: int = 0
    network: str = ""
    mac: str = ""
    # Whether the image booted was sealed (the build key removed): only then must no login carry it.
    sealed: bool = False
    build_key: str = ""


def write(path: Path, facts: BootFacts) -> Path:
    atomic_write_text(path, json.dumps(asdict(facts), indent=2) + "\n")
    return path


def read(path: Path) -> BootFacts:
    return BootFacts(**json.loads(path.read_text()))
