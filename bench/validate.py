"""Benchmark: the factory's validator in one process versus `ksvalidator -v RHEL7` once per file.

    python bench/validate.py [--count 200]

Prints both totals, the per-file times and their ratio (goal: >= 20x), then the time to validate every
spec of the repository in-process and as a fresh `factory validate` process (goal: < 2 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from factory.host import tools
from factory.spec import find_specs, load_spec
from factory.stages.validate.validate import validate_file, validate_spec

REPO = Path(__file__).resolve().parents[1]

TEMPLATE = """text
network --bootproto=dhcp --device=eth0 --onboot=yes --hostname=host{n}.example
%include common.ks
timezone Etc/UTC --isUtc
rootpw --lock
services --enabled=sshd{extra}
bootloader --append="console=ttyS0,115200 console=tty0"
part / --fstype=xfs --size={size} --grow
poweroff
%packages
@core
pkg{n}
%end
%post --erroronfail --log=/root/post{n}.log
echo {n}
%end
"""


def generate(folder: Path, count: int) -> list[Path]:
    (folder / "common.ks").write_text("lang en_US.UTF-8\nkeyboard us\nselinux --enforcing\n")
    paths = []
    for n in range(count):
        path = folder / f"ks{n:04d}.ks"
        extra = ",chronyd" if n % 2 else ""
        path.write_text(TEMPLATE.format(n=n, extra=extra, size=1024 + n))
        paths.append(path)
    return paths


def ksvalidator() -> str:
    # The console script next to this interpreter: a pyenv shim on PATH would add its own start-up time.
    local = Path(sys.executable).with_name("ksvalidator")
    return str(local) if local.exists() else "ksvalidator"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        paths = generate(Path(tmp), args.count)

        started = time.perf_counter()
        reports = [validate_file(p, "RHEL7") for p in paths]
        ours = time.perf_counter() - started
        dirty = sum(1 for r in reports if r.findings)

        started = time.perf_counter()
        failures = 0
        for p in paths:
            proc = tools.run([ksvalidator(), "-v", "RHEL7", str(p)], timeout=60, check=False)
            failures += proc.returncode != 0
        theirs = time.perf_counter() - started

    n = len(paths)
    print(f"kickstarts: {n} generated (factory findings in {dirty}, ksvalidator failures {failures})")
    print(f"factory validator, one process: {ours:8.3f} s total  {ours / n * 1000:8.2f} ms/file")
    print(f"ksvalidator -v RHEL7 per file:  {theirs:8.3f} s total  {theirs / n * 1000:8.2f} ms/file")
    print(f"ratio: {theirs / ours:.1f}x faster (goal >= 20x)")

    specs = find_specs(REPO)
    started = time.perf_counter()
    findings = sum(len(validate_spec(load_spec(s)).findings) for s in specs)
    repo_inproc = time.perf_counter() - started
    started = time.perf_counter()
    proc = tools.run([sys.executable, "-m", "factory", "validate"], cwd=REPO, timeout=60, check=False)
    repo_cli = time.perf_counter() - started
    print(
        f"repository: {len(specs)} specs, {findings} findings: {repo_inproc:.3f} s in-process, "
        f"{repo_cli:.3f} s as a fresh `factory validate` (exit {proc.returncode}; goal < 2 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
