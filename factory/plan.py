"""The build matrix: per spec, what a build host needs, where the image goes, and whether it must be built.

A spec is unchanged when a verified build with the same build key exists (`pipeline.build_inputs` and
`pipeline.find_build`: the key `factory build` itself reuses builds by). The ISO's sha256 is part of the key;
it is known before a build only when the spec names it (sha256, or sha256_env set): otherwise the spec is
planned as changed, with the reason.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from factory.core import paths
from factory.pipeline import build_inputs, find_build
from factory.spec import Accel, Spec
from factory.stages.validate.flatten import display_path

MIB = 1024**2
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Host:
    cores: int
    memory_mib: int
    disk_gib: float


# GitHub's standard hosted Linux runner for public repositories (ubuntu-latest, ubuntu-24.04, ubuntu-22.04):
# 4 vCPU, 16 GB RAM, 14 GB SSD, x64 — "Supported runners and hardware resources",
# https://docs.github.com/en/actions/reference/runners/github-hosted-runners (read 2026-12-01).
# GitHub gives GB (10^9 bytes); the figures below are those in MiB/GiB, rounded down.
HOSTED_RUNNER = Host(cores=4, memory_mib=16 * 10**9 // MIB, disk_gib=round(14 * 10**9 / GIB, 2))

# Beside the guest's own memory: QEMU's own use (device emulation, TCG's translation cache, page tables)
# plus the factory, pytest/testinfra and qemu-img — about 0.5 GiB measured on a testbed build, with margin.
HOST_OVERHEAD_MIB = 768
# An EL 7 DVD is 4.0-4.4 GiB (CentOS-7-x86_64-DVD-1511.iso: 4.03 GiB); used when the ISO is not at hand.
DVD_GIB = 4.5
# The testbed ISO (~100 MiB) and the cached Debian root it is made from (~0.4 GiB), rounded up.
TESTBED_MEDIA_GIB = 1.0


@dataclasses.dataclass(frozen=True)
class Resources:
    cores: int
    memory_mib: int
    # An upper bound: the install disk and the sealed copy (each qcow2 may grow to the guest disk), one
    # export per format (each at most the guest disk; sparse and compressed ones are far smaller), the ISO.
    disk_gib: float
    # "required" (accel: kvm), "preferred" (auto: TCG works, EL installs then take hours), "unused" (tcg).
    kvm: str


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    profile: str
    regions: tuple[str, ...]
    credentials: str  # "web-identity" or "profile"


@dataclasses.dataclass(frozen=True)
class Entry:
    spec: str
    spec_file: str
    os: str
    resources: Resources
    targets: tuple[TargetPlan, ...]
    # The spec's promotion goes to the embedded local AWS (moto): no credentials needed.
    aws_local: bool
    # The ISO's sha256 when known before the build (the workflow's media cache key), and the variable
    # naming a local ISO for media behind a login (the workflow fetches it from a private location).
    iso_sha256: str | None
    media_path_env: str | None
    changed: bool
    reason: str
    key: str | None
    last_verified: str | None
    # What the spec needs beyond a GitHub hosted runner: "cores", "memory", "disk" (empty: it fits).
    over_hosted_runner: tuple[str, ...]
    hosted_runner_notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resources(spec: Spec) -> Resources:
    kvm = {Accel.KVM: "required", Accel.AUTO: "preferred", Accel.TCG: "unused"}[spec.vm.accel]
    images = 2 + len(spec.export)
    disk = images * spec.vm.disk_gib + media_gib(spec)
    return Resources(
        cores=spec.vm.cpus,
        memory_mib=spec.vm.memory_mib + HOST_OVERHEAD_MIB,
        disk_gib=round(disk, 2),
        kvm=kvm,
    )


def media_gib(spec: Spec) -> float:
    """The ISO's size: the local or cached file when there is one, else a DVD's."""
    if spec.media.builtin is not None:
        return TESTBED_MEDIA_GIB
    candidates: list[Path] = []
    if spec.media.path is not None or (spec.media.path_env and os.environ.get(spec.media.path_env)):
        local = spec.media_path()
        if local is not None:
            candidates.append(local)
    if spec.media.sha256 is not None:
        candidates.append(paths.cache_dir() / "iso" / f"{spec.media.sha256}.iso")
    for path in candidates:
        if path.is_file():
            return path.stat().st_size / GIB
    return DVD_GIB


def over_hosted(res: Resources, host: Host = HOSTED_RUNNER) -> tuple[tuple[str, ...], tuple[str, ...]]:
    over: list[str] = []
    notes: list[str] = []
    if res.cores > host.cores:
        over.append("cores")
        notes.append(f"cores: needs {res.cores}, a hosted runner has {host.cores}")
    if res.memory_mib > host.memory_mib:
        over.append("memory")
        notes.append(
            f"memory: needs {res.memory_mib} MiB (guest + {HOST_OVERHEAD_MIB} MiB for QEMU and the factory), "
            f"a hosted runner has {host.memory_mib} MiB"
        )
    if res.disk_gib > host.disk_gib:
        over.append("disk")
        notes.append(f"disk: needs up to {res.disk_gib} GiB, a hosted runner guarantees {host.disk_gib} GiB")
    return tuple(over), tuple(notes)


def _known_iso_sha256(spec: Spec) -> tuple[str | None, str]:
    """The ISO's sha256 as far as it is known before a build, or None and why not."""
    if spec.media.builtin is not None:
        return None, f"the {spec.media.builtin} ISO's sha256 is known only once it is built"
    if spec.media.sha256_env is not None and not os.environ.get(spec.media.sha256_env):
        return None, f"media.sha256_env: {spec.media.sha256_env} is not set, the ISO's sha256 is unknown"
    return spec.media.expected_sha256(spec.source), ""


def change(spec: Spec, build_root: Path) -> tuple[bool, str, str | None, str | None]:
    """(changed, reason, build key, the last verified build's directory)."""
    last_any = find_build(build_root, spec.name, None, stage="verify")
    last = str(last_any.path) if last_any is not None else None
    sha, why = _known_iso_sha256(spec)
    if sha is None:
        return True, why, None, last
    key, inputs = build_inputs(spec, sha)
    same = find_build(build_root, spec.name, key, stage="verify")
    if same is not None:
        return False, f"unchanged since verified build {same.build_id}", key, str(same.path)
    if last_any is None:
        return True, "no verified build yet", key, None
    before = last_any.record.get("inputs") or {}
    names = [n.removesuffix("_sha256") for n, v in inputs.items() if before.get(n) != v]
    what = ", ".join(names) if names else "build key"
    return True, f"{what} changed since verified build {last_any.build_id}", key, last


def plan_spec(spec: Spec, build_root: Path) -> Entry:
    res = resources(spec)
    over, notes = over_hosted(res)
    targets: tuple[TargetPlan, ...] = ()
    if spec.aws is not None:
        targets = tuple(
            TargetPlan(
                profile=t.profile,
                regions=tuple(t.regions),
                credentials="web-identity" if t.web_identity is not None else "profile",
            )
            for t in spec.aws.targets
        )
    changed, reason, key, last = change(spec, build_root)
    iso_sha256, _ = _known_iso_sha256(spec)
    return Entry(
        spec=spec.name,
        spec_file=display_path(spec.source),
        os=spec.os,
        resources=res,
        targets=targets,
        aws_local=spec.aws is not None and spec.aws.endpoint_url == "local",
        iso_sha256=iso_sha256,
        media_path_env=spec.media.path_env,
        changed=changed,
        reason=reason,
        key=key,
        last_verified=last,
        over_hosted_runner=over,
        hosted_runner_notes=notes,
    )


def github_matrix(entries: list[Entry], *, include_unchanged: bool = False) -> dict[str, Any]:
    """What `strategy.matrix` takes: {"include": [one flat object per spec to build]}.

    Flat scalars (and one list of profiles) so a job reads `matrix.spec`, `matrix.memory_mib`...;
    `over_hosted_runner` is a comma-joined string (empty: fits), testable with contains(); unknown
    values are "" (an expression's falsy string), never null.
    """
    include = [
        {
            "spec": e.spec,
            "spec_file": e.spec_file,
            "cores": e.resources.cores,
            "memory_mib": e.resources.memory_mib,
            "disk_gib": e.resources.disk_gib,
            "kvm": e.resources.kvm,
            "targets": [t.profile for t in e.targets],
            "promote": bool(e.targets),
            "aws_local": e.aws_local,
            "iso_sha256": e.iso_sha256 or "",
            "media_env": e.media_path_env or "",
            "changed": e.changed,
            "reason": e.reason,
            "fits_hosted_runner": not e.over_hosted_runner,
            "over_hosted_runner": ",".join(e.over_hosted_runner),
        }
        for e in entries
        if e.changed or include_unchanged
    ]
    return {"include": include}
