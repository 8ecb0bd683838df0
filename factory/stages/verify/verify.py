"""The verify stage: boot the image on a throw-away overlay, log in with the build key, run tests/images.

    verify(spec, image, build, key=key) -> VerifyResult

The image under test is never written: QEMU writes to `verify/overlay.qcow2` (backed by the image), which
is deleted afterwards, and the image's sha256 is compared before and after. The acceptance suite runs as
`python -m pytest tests/images` in a subprocess with testinfra's SSH backend, so its results are plain
JUnit XML and a failing check can never crash the factory. A guest that cannot get to SSH fails fast:
SeaBIOS finding no bootable disk, a kernel panic, an emergency shell or the VM exiting end the wait at
once with a VerifyError (exit 6) carrying the serial transcript. Over the same SSH connection the image's
installed packages are recorded (`inventory.py`, `verify/inventory.json`) and compared with the previous
verified build of the spec (`pkgdiff.py`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import factory
from factory.core import digest
from factory.core.record import BuildDir, atomic_write_text
from factory.errors import FactoryError, VerifyError
from factory.host import tools
from factory.spec import Spec
from factory.stages.seal import generalise
from factory.stages.verify import checks, inventory, pkgdiff, targets
from factory.vm import qemu
from factory.vm.guest import draining, fail, free_port, overlay, vm_config, wait_for_ssh, write_ssh_config
from factory.vm.sshkey import BuildKey

POWEROFF_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Summary:
    passed: int
    failed: int
    skipped: int
    errors: int


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    image_sha256: str
    junit: Path
    summary: Summary
    ssh_ready_s: float
    suite_s: float
    transcript: Path
    # Seconds spent generalising the passing boot for the seal stage (0: not asked, or the suite failed).
    generalise_s: float = 0.0
    # The installed packages (verify/inventory.json), the seconds their query took, and what changed since
    # the previous verified build of the spec (None: the first one).
    inventory: Path | None = None
    packages: int = 0
    inventory_s: float = 0.0
    package_diff: pkgdiff.PackageDiff | None = None
    # One per target boot (targets.planned(spec)); `passed` needs every one passed or honestly not booted.
    boots: tuple[targets.BootResult, ...] = ()
    # Seconds of the whole stage: today's boot, generalising and the target boots.
    total_s: float = 0.0
    # Seconds from the start until today's boot was done (its suite, and generalising when asked).
    default_s: float = 0.0


def suite_dir() -> Path:
    """tests/images of the source tree the factory runs from (an editable install or a checkout)."""
    return Path(factory.__file__).resolve().parent.parent / "tests" / "images"


def parse_junit(path: Path) -> Summary:
    """Counts from pytest's JUnit XML (one <testsuite>, possibly inside <testsuites>)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise VerifyError(f"{path}: no readable JUnit report from the acceptance suite: {exc}") from None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = failed = skipped = errors = 0
    for s in suites:
        total += int(s.get("tests", 0))
        failed += int(s.get("failures", 0))
        skipped += int(s.get("skipped", 0))
        errors += int(s.get("errors", 0))
    return Summary(passed=total - failed - skipped - errors, failed=failed, skipped=skipped, errors=errors)


def suite_command(
    spec: Spec,
    port: int,
    ssh_config: Path,
    junit: Path,
    *,
    user: str = "root",
    extra: tuple[str, ...] = (),
    host: str | None = None,
) -> list[str]:
    """The acceptance suite's argv; a target boot logs in as its cloud user (`user`) and passes its
    `--boot`/`--boot-facts`/`--sudo` as `extra`. `host` (default 127.0.0.1:`port`): another machine, e.g.
    the instance the AWS launch test started."""
    return [
        sys.executable,
        "-m",
        "pytest",
        str(suite_dir()),
        f"--spec={spec.source.resolve()}",
        f"--hosts=ssh://{user}@{host or f'127.0.0.1:{port}'}",
        f"--ssh-config={ssh_config}",
        f"--junitxml={junit}",
        # The suite must not write a cache into the source tree (several builds may run at once).
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        *extra,
    ]


def run_suite(
    spec: Spec,
    port: int,
    ssh_config: Path,
    junit: Path,
    log: Path,
    *,
    user: str = "root",
    extra: tuple[str, ...] = (),
) -> tuple[int, float]:
    """Run tests/images against the guest; returns pytest's exit status and the seconds it took."""
    started = time.monotonic()
    junit.unlink(missing_ok=True)
    try:
        proc = tools.run(
            suite_command(spec, port, ssh_config, junit, user=user, extra=extra),
            timeout=spec.timeouts.verify,
            check=False,
            cwd=suite_dir().parent.parent,
        )
    except FactoryError as exc:
        raise VerifyError(f"the acceptance suite did not finish: {exc.message}") from None
    atomic_write_text(log, (proc.stdout + proc.stderr).decode(errors="replace"))
    return proc.returncode, time.monotonic() - started


def _close_ssh_master(ssh_config: Path) -> None:
    # testinfra asks ssh for ControlPersist: end the master now instead of leaving it behind for a minute.
    tools.run(["ssh", "-F", str(ssh_config), "-O", "exit", "127.0.0.1"], timeout=15, check=False)


def _target_boots(
    spec: Spec,
    image: Path,
    out: Path,
    key: BuildKey,
    wanted: tuple[str, ...],
    *,
    default_passed: bool,
    parallel: int,
) -> tuple[targets.BootResult, ...]:
    """Run the target boots after today's and merge their suites into verify/junit.xml."""
    if not wanted:
        return ()
    if default_passed:
        generalised = out / generalise.GENERALISED
        sealed = generalised.is_file()
        results = targets.run_boots(
            spec, generalised if sealed else image, out / "targets", key, wanted, sealed=sealed,
            parallel=parallel,
        )  # fmt: skip
    else:
        results = tuple(
            targets.BootResult(b, "not-booted", reason="today's boot failed its suite") for b in wanted
        )
    targets.merge_junit(out / "junit.xml", results)
    return results


def _can_verify(spec: Spec, image: Path, key: BuildKey) -> None:
    """Before anything boots: known skips, the image, the key and the suite are there."""
    checks.require_known_skips(spec)
    if not image.is_file():
        raise VerifyError(f"{image}: no such image to verify")
    if not key.exists():
        raise VerifyError(f"{key.private}: the build key is missing (was the image already sealed?)")
    if not suite_dir().is_dir():
        raise VerifyError(
            f"{suite_dir()}: the acceptance suite is missing (run the factory from its source tree)"
        )


def _inventory(ssh_config: Path, build: BuildDir) -> tuple[inventory.Inventory, Path, float]:
    started = time.monotonic()
    installed = inventory.collect(ssh_config)
    return installed, inventory.save(installed, build.path), time.monotonic() - started


def verify(
    spec: Spec,
    image: Path,
    build: BuildDir,
    *,
    key: BuildKey,
    generalise_boot: bool = False,
    prepare_disk: Callable[[Path], None] | None = None,
    boots: tuple[str, ...] | None = None,
    parallel: int = 2,
) -> VerifyResult:
    """Boot `image` on an overlay, wait for SSH, run tests/images; the image itself is never modified.

    With `generalise_boot`, a passing boot is then cleaned for sealing (`factory.stages.seal.generalise`)
    and its overlay
    kept as `verify/generalised.qcow2` for the seal stage. `prepare_disk` is called with the throw-away
    overlay before it boots (`factory.stages.verify.access` adds its login key there).

    Then the target boots (`boots`, default targets.planned(spec)), `parallel` at once: on the generalised
    overlay when there is one (what seal ships: the build key is gone, so the suite gets in only with
    the key the target's metadata serves), else on the image. They run only when today's boot passed.
    verify/junit.xml holds today's suite and one <testsuite> per target boot."""
    begun = time.monotonic()
    _can_verify(spec, image, key)
    out = build.verify_dir
    out.mkdir(parents=True, exist_ok=True)
    transcript, bios_log, junit = out / "console.log", out / "bios.log", out / "junit.xml"
    for stale in (transcript, bios_log, junit, build.path / inventory.INVENTORY):
        stale.unlink(missing_ok=True)
    generalise.drop_generalised(build)
    image_sha256 = digest.sha256_file(image)
    generalise_s = 0.0
    port = free_port()
    # Unix sockets (QEMU's, ssh's ControlPath) must fit in 107 bytes: keep them out of the build path.
    sockets = Path(tempfile.mkdtemp(prefix="factory-verify-"))
    try:
        ssh_config = write_ssh_config(out / "ssh_config", key, port, sockets / "ssh-%C")
        with (
            overlay(image, out / "overlay.qcow2", prepare_disk) as disk,
            qemu.running(vm_config(spec, disk, port, sockets, bios_log), transcript) as vm,
        ):
            ssh_ready_s = wait_for_ssh(
                vm, ssh_config, port=port, timeout=spec.timeouts.ssh, transcript=transcript, bios_log=bios_log
            )
            try:
                with draining(vm):
                    status, suite_s = run_suite(spec, port, ssh_config, junit, out / "pytest.log")
                    # Over the suite's still-open SSH master, before generalising changes the guest.
                    installed, inventory_path, inventory_s = _inventory(ssh_config, build)
                    if generalise_boot and status == 0:
                        # The suite passed: generalise this very boot, so sealing needs no second one.
                        started = time.monotonic()
                        removed = generalise.generalise(vm, ssh_config, transcript)
                        generalise_s = time.monotonic() - started
                        os.replace(disk, out / generalise.GENERALISED)
                        generalise.write_generalised_note(out, image_sha256, removed)
            finally:
                _close_ssh_master(ssh_config)
            # Otherwise the overlay is thrown away: no need for a clean shutdown, QEMU is stopped when the
            # block ends.
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if digest.sha256_file(image) != image_sha256:
        raise VerifyError(f"{image}: the image changed while it was verified; refusing to trust it")
    if status not in (0, 1):
        # 2 interrupted, 3 internal error, 4 usage error, 5 nothing collected: the suite itself broke.
        raise fail(
            f"the acceptance suite could not run (pytest exit status {status}); see {out / 'pytest.log'}",
            out / "pytest.log",
            transcript,
        )
    summary = parse_junit(junit)
    default_s = time.monotonic() - begun
    default_passed = status == 0 and summary.failed == 0 and summary.errors == 0
    boot_results = _target_boots(
        spec, image, out, key, targets.planned(spec) if boots is None else boots,
        default_passed=default_passed, parallel=parallel,
    )  # fmt: skip
    if boot_results:
        summary = parse_junit(junit)
    package_diff = pkgdiff.against_previous(build)
    return VerifyResult(
        passed=default_passed and all(b.ok for b in boot_results),
        boots=boot_results,
        total_s=round(time.monotonic() - begun, 2),
        default_s=round(default_s, 2),
        image_sha256=image_sha256,
        junit=junit,
        summary=summary,
        ssh_ready_s=round(ssh_ready_s, 2),
        suite_s=round(suite_s, 2),
        transcript=transcript,
        generalise_s=round(generalise_s, 2),
        inventory=inventory_path,
        packages=len(installed.packages),
        inventory_s=round(inventory_s, 2),
        package_diff=package_diff,
    )
