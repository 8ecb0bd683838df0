"""Benchmark: the compliance scan of a testbed image under TCG, offline vs in the booted guest, in seconds.

    python bench/compliance.py [--build BUILD_DIR | --image IMAGE] [--runs N]

Offline is what the factory's gate does: copy the root tree out of the image (qemu-img + debugfs rdump)
and run the host's oscap on it with OSCAP_PROBE_ROOT. In-guest boots the same disk on a throw-away
overlay (the verify stage's VM shape), logs in with the build key and runs oscap there against the same
datastream and profile. The testbed guest carries no oscap, so the bench puts Debian's openscap-scanner
into the booted overlay first: apt resolves what is missing against the guest's own dpkg status (26
packages on the testbed), `apt-get download` fetches exactly those .debs on the host, they are copied in
over SSH and installed with `dpkg -i`. Boot -> SSH and that install are timed and printed separately;
the in-guest figure is `oscap xccdf eval` alone (wall time of the command over an open SSH connection).
The overlay is deleted afterwards: the image is never written.

Both scans must agree rule by rule (same result for every rule); the bench fails (exit 1) when they do not.
So that the agreement covers a failing rule too, both scan a raw copy of the disk in which /etc/shadow was
made world-readable (debugfs `sif`): xccdf_org.imagefactory_rule_file_permissions_etc_shadow fails and
the other two rules pass, in both scans. `--as-is` scans the disk unchanged (every rule passes).

With --build, the build's installed disk (disk.qcow2, which still holds the build key; a sealed image has
none, so it cannot be logged into) is scanned both ways; with neither option the testbed is installed
first (not timed); --image scans a given image offline only.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vm"))

from factory.core import digest, offline
from factory.core.record import BuildDir
from factory.errors import FactoryError
from factory.host import tools
from factory.spec import Compliance, Spec, load_spec
from factory.stages.compliance import compliance, scap
from factory.vm import qemu, sshkey
from factory.vm.guest import (
    draining,
    free_port,
    overlay,
    ssh_argv,
    ssh_config_text,
    vm_config,
    wait_for_ssh,
)

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "xccdf_org.imagefactory_profile_testbed"
SPOILED_RULE = "xccdf_org.imagefactory_rule_file_permissions_etc_shadow"
GUEST_DIR = "/tmp/bench-oscap"
# The bench times boot -> SSH rather than judging it: on a shared host under TCG it can take minutes.
SSH_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class GuestScan:
    boot_ssh_s: float
    packages: tuple[str, ...]
    install_s: float
    scan_s: list[float]
    results: dict[str, str]


def _target(args: argparse.Namespace, work: Path) -> tuple[Path, BuildDir | None]:
    """The image to scan and, when it can be booted and logged into, its build (for the key)."""
    if args.image is not None:
        return Path(args.image), None
    if args.build is not None:
        build = BuildDir.open(args.build)
        return build.path / "disk.qcow2", build
    from fixtures_verify import install_testbed

    started = time.monotonic()
    installed = install_testbed(work, "testbed")
    print(f"install (not part of the figures): {time.monotonic() - started:.1f} s")
    return Path(installed.disk), installed.build


def _spoiled_copy(image: Path, work: Path) -> Path:
    """A raw copy of `image` whose /etc/shadow is mode 0644 (the image itself is not touched)."""
    raw = work / "spoiled.raw"
    tools.run(["qemu-img", "convert", "-O", "raw", image, raw], timeout=600)
    root = offline.root_partition(raw)
    if root is None:
        raise SystemExit(f"{image}: no ext root partition to spoil (use --as-is)")
    device = f"{raw}?offset={root.offset}"
    tools.run(["debugfs", "-w", "-R", "sif /etc/shadow mode 0100644", device], timeout=120)
    # debugfs exits 0 whatever happens: read the mode back.
    stat = tools.run(["debugfs", "-R", "stat /etc/shadow", device], timeout=120).stdout.decode()
    if "Mode:  0644" not in stat and "Mode: 0644" not in stat:
        raise SystemExit(f"debugfs did not change /etc/shadow's mode in the copy: {stat.splitlines()[:2]}")
    return raw


def _ssh(config: Path, *command: str, input: bytes | None = None, timeout: float = 300) -> bytes:
    return tools.run(ssh_argv(config, *command), input=input, timeout=timeout).stdout


def _missing_debs(guest_status: Path, dest: Path) -> list[Path]:
    """The .debs openscap-scanner needs on top of what the guest has, downloaded into `dest`: apt
    resolves against the guest's dpkg status file, not the host's."""
    sim = tools.run(
        ["apt-get", "-s", "-o", f"Dir::State::status={guest_status}",
         "install", "--no-install-recommends", "openscap-scanner"],
        timeout=120,
    ).stdout.decode()  # fmt: skip
    # "Inst NAME (VERSION ARCHIVE [ARCH])", or "Inst NAME [OLD] (VERSION ...)" for an upgrade.
    pins = []
    for line in sim.splitlines():
        if line.startswith("Inst "):
            words = line.split()
            version = next(w for w in words[2:] if w.startswith("(")).lstrip("(")
            pins.append(f"{words[1]}={version}")
    if not pins:
        raise SystemExit("apt found nothing to install for openscap-scanner: does the guest have it already?")
    dest.mkdir(parents=True, exist_ok=True)
    tools.run(["apt-get", "download", *pins], cwd=dest, timeout=600)
    return sorted(dest.glob("*.deb"))


def _tar_of(files: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
    return buf.getvalue()


def guest_scan(
    spec: Spec, build: BuildDir, image: Path, datastream: Path, *, runs: int, work: Path
) -> GuestScan:
    """Boot `image` on an overlay, put openscap-scanner in, and time `oscap xccdf eval` in the guest."""
    key = sshkey.load(build.key)
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # QEMU's and ssh's Unix sockets must fit in 107 bytes: a short folder of their own.
    sockets = Path(tempfile.mkdtemp(prefix="bench-oscap-"))
    config = work / "ssh_config"
    # One SSH connection for every command: under TCG each key exchange costs the guest seconds.
    config.write_text(
        ssh_config_text(key, port, sockets / "ssh-%C") + "  ControlMaster auto\n  ControlPersist 120\n"
    )
    config.chmod(0o600)
    transcript, bios_log = work / "console.log", work / "bios.log"
    try:
        with (
            overlay(image, work / "overlay.qcow2") as disk,
            qemu.running(vm_config(spec, disk, port, sockets, bios_log), transcript) as vm,
        ):
            boot_ssh_s = wait_for_ssh(
                vm, config, port=port, timeout=SSH_TIMEOUT_S, transcript=transcript, bios_log=bios_log
            )
            with draining(vm):
                status = work / "guest-dpkg-status"
                status.write_bytes(_ssh(config, "cat", "/var/lib/dpkg/status"))
                debs = _missing_debs(status, work / "debs")
                started = time.monotonic()
                _ssh(config, f"mkdir -p {GUEST_DIR} && tar -x -C {GUEST_DIR}", input=_tar_of(debs))
                log = f"{GUEST_DIR}/dpkg.log"
                # dpkg's chatter stays in the guest; on failure its last lines come back as the error.
                _ssh(
                    config,
                    f"dpkg -i {GUEST_DIR}/*.deb >{log} 2>&1 || {{ tail -n 3 {log} >&2; exit 1; }}",
                    timeout=900,
                )
                install_s = time.monotonic() - started
                _ssh(config, f"cat > {GUEST_DIR}/ds.xml", input=datastream.read_bytes())
                scan_s = []
                for _ in range(runs):
                    started = time.monotonic()
                    proc = tools.run(
                        ssh_argv(config, "oscap", "xccdf", "eval", "--profile", PROFILE,
                                 "--results-arf", f"{GUEST_DIR}/arf.xml", f"{GUEST_DIR}/ds.xml"),
                        timeout=compliance.OSCAP_TIMEOUT_S,
                        check=False,
                    )  # fmt: skip
                    scan_s.append(time.monotonic() - started)
                    if proc.returncode not in compliance.OSCAP_OK:
                        err = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
                        raise SystemExit(f"oscap in the guest failed ({proc.returncode}): {' | '.join(err)}")
                arf = work / "guest-arf.xml"
                arf.write_bytes(_ssh(config, "cat", f"{GUEST_DIR}/arf.xml"))
    finally:
        tools.run(["ssh", "-F", str(config), "-O", "exit", "127.0.0.1"], timeout=15, check=False)
        shutil.rmtree(sockets, ignore_errors=True)
    results = {r.rule: r.result for r in scap.rule_results(arf)}
    names = tuple(sorted(d.name.split("_")[0] for d in debs))
    return GuestScan(round(boot_ssh_s, 2), names, install_s, scan_s, results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--image", type=Path, help="a testbed image (qcow2 or raw): offline scan only")
    group.add_argument("--build", type=Path, help="an installed testbed build directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--as-is", action="store_true", help="scan the disk unchanged (no failing rule)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-compliance-"))
    try:
        return _run(args, work)
    except FactoryError as exc:
        print(f"bench/compliance.py: {exc.message}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _counts(results: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for result in results.values():
        tally[result] = tally.get(result, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in sorted(tally.items()))


def _run(args: argparse.Namespace, work: Path) -> int:
    image, build = _target(args, work)
    if not args.as_is:
        image = _spoiled_copy(image, work)
        print(f"scanning a raw copy with /etc/shadow mode 0644: {SPOILED_RULE} must fail in both scans")
    base = load_spec(ROOT / "specs" / "testbed.yaml")
    spec = base.model_copy(update={"compliance": Compliance(profile=PROFILE)})
    datastream = spec.compliance_datastream()
    assert datastream is not None
    sha = digest.sha256_file(image)
    extract, scan, total = [], [], []
    found: dict[str, str] = {}
    for run in range(args.runs):
        started = time.monotonic()
        result = compliance.scan(spec, image, work / f"run{run}", image_sha256=sha)
        total.append(time.monotonic() - started)
        extract.append(result.extract_s)
        scan.append(result.scan_s)
        found = {r.rule: r.result for r in scap.rule_results(result.arf)}
        print(
            f"offline run {run + 1}: {result.line()}; "
            f"extract {result.extract_s:.2f} s, oscap {result.scan_s:.2f} s"
        )
    print(
        f"offline compliance scan of {image.name} ({image.stat().st_blocks * 512 / 2**20:.0f} MiB allocated, "
        f"{args.runs} runs): "
        f"copy-out (qemu-img raw + debugfs rdump) median {statistics.median(extract):.2f} s, "
        f"oscap eval median {statistics.median(scan):.2f} s, total median {statistics.median(total):.2f} s"
    )
    if build is None:
        print("in-guest scan: not measured (--image gives no build key to log in with; use --build)")
        return 0
    guest = guest_scan(spec, build, image, datastream, runs=args.runs, work=work / "guest")
    print(
        f"in-guest: boot -> SSH {guest.boot_ssh_s:.1f} s; openscap-scanner + {len(guest.packages) - 1} "
        f"dependencies copied in and dpkg -i'd {guest.install_s:.1f} s (not part of the scan); "
        f"oscap xccdf eval over SSH, {args.runs} runs: "
        + ", ".join(f"{s:.2f}" for s in guest.scan_s)
        + f" s, median {statistics.median(guest.scan_s):.2f} s"
    )
    if not args.as_is and found.get(SPOILED_RULE) != "fail":
        print(f"FAILED: {SPOILED_RULE} did not fail offline ({found.get(SPOILED_RULE)}) on the spoiled copy")
        return 1
    if guest.results != found:
        differ = sorted(r for r in set(found) | set(guest.results) if found.get(r) != guest.results.get(r))
        for rule in differ:
            print(
                f"  {rule}: offline {found.get(rule, 'absent')}, in-guest {guest.results.get(rule, 'absent')}"
            )
        print(f"FAILED: the two scans disagree on {len(differ)} rule(s)")
        return 1
    print(
        f"both scans agree rule by rule on {len(found)} rules ({_counts(found)}); "
        f"offline total {statistics.median(total):.2f} s vs in-guest oscap "
        f"{statistics.median(guest.scan_s):.2f} s "
        f"(+ boot -> SSH {guest.boot_ssh_s:.1f} s + openscap install {guest.install_s:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
