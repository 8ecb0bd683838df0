"""The one way this project starts moto: a real HTTP server on 127.0.0.1 in its own process, taught two AWS
rules that moto 5.2.5 lacks. The tests' session server and the demo's `endpoint_url: local` both use it.

The factory talks to it over HTTP only; the rules below are installed into moto's backends inside the
server process (`python -m factory.targets.aws.motoserver`), so no client-side patching is involved.

Extensions (each is what AWS documents for the call; moto 5.2.5 does neither):

1. **Cross-account CopyImage.** moto looks the source AMI up only in the caller's own account, so a copy
   of an AMI shared by another account fails as "not found" however it was shared. Here, when the source
   AMI belongs to another account in `SourceRegion`, the copy succeeds only if
   - the AMI's launch permission includes the caller's account (or `all`), else
     `InvalidAMIID.NotFound` "The image id '[ami-…]' does not exist" (the AMI is invisible to the caller,
     as on AWS), and
   - every snapshot backing it has a createVolumePermission for the caller (or `all`), else
     `InvalidRequest` "You do not have permission to access the storage of this ami" (AWS's wording).
   The copy is made in the caller's account and region, as AWS does.
2. **CreateGrant honours the key policy's explicit Deny.** moto checks key policies only for DescribeKey;
   here CreateGrant on a key whose policy has a `Deny` statement for `kms:CreateGrant` (or `kms:*`) on `*`
   answers `AccessDeniedException`, as AWS does for an explicit deny. This lets tests stand for "this role
   may not create grants on that key".
3. **Status checks take time.** moto reports both status checks of a running instance as `ok` from the
   moment RunInstances returns. On AWS they are `initializing` (each detail `initializing`) until the first
   checks complete, a few minutes after the instance enters `running`. Here they are `initializing` for the
   first STATUS_INITIALIZING_S seconds after launch (environment `FACTORY_MOTO_STATUS_INITIALIZING_S`
   overrides it), then moto's `ok`: the `instance_status_ok` waiter really waits, and a short timeout
   really times out.

Started with `MOTO_EC2_LOAD_DEFAULT_AMIS=false` (no preloaded public AMIs), on a free port; the server
prints its URL on stdout once it listens and stops when its stdin closes (so it never outlives its parent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory.errors import AwsError

STARTUP_TIMEOUT = 60.0
STORAGE_DENIED = "You do not have permission to access the storage of this ami"
STATUS_INITIALIZING_S = 1.0


def install_extensions() -> None:
    """Install the rules above into moto's backends (this process only: the server process)."""
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.utils import random_ami_id
    from moto.kms import policy_validator
    from moto.kms.responses import KmsResponse

    original_copy = AmiBackend.copy_image
    if getattr(original_copy, "factory_extension", False):
        return

    def copy_image(
        self: Any,
        source_image_id: str,
        source_region: str,
        name: str | None = None,
        description: str | None = None,
    ) -> Any:
        caller = self.account_id
        backends: list[tuple[str, str, Any]] = list(ec2_backends.iter_backends())
        owner = next(
            (
                backend
                for account, region, backend in backends
                if region == source_region and account != caller and source_image_id in backend.amis
            ),
            None,
        )
        own = ec2_backends[caller][source_region]
        if owner is None or source_image_id in own.amis:
            return original_copy(self, source_image_id, source_region, name, description)
        source = owner.amis[source_image_id]
        if not (source.is_public or {"UserId": caller} in source.launch_permissions):
            raise InvalidAMIIdError(source_image_id)
        for mapping in source.block_device_mappings:
            snapshot = owner.snapshots.get(mapping["Ebs"]["SnapshotId"])
            if snapshot is None:
                continue
            if caller not in snapshot.create_volume_permission_userids and (
                "all" not in snapshot.create_volume_permission_groups
            ):
                raise EC2ClientError("InvalidRequest", STORAGE_DENIED)
        copy = Ami(self, random_ami_id(), source_ami=source, name=name, description=description)
        self.amis[copy.id] = copy
        return copy

    copy_image.factory_extension = True  # type: ignore[attr-defined]
    AmiBackend.copy_image = copy_image  # type: ignore[method-assign]

    policy_validator.ALTERNATIVE_ACTIONS["kms:CreateGrant"] = ["kms:*", "kms:CreateGrant"]
    original_grant = KmsResponse.create_grant

    def create_grant(self: Any) -> str:
        self._validate_key_id(self._get_param("KeyId"))
        self._validate_key_policy(self._get_param("KeyId"), "kms:CreateGrant")
        return original_grant(self)

    KmsResponse.create_grant = create_grant  # type: ignore[method-assign]
    _install_status_checks()


def _install_status_checks() -> None:
    from moto.core.utils import utcnow
    from moto.ec2.models.instances import Instance

    seconds = float(os.environ.get("FACTORY_MOTO_STATUS_INITIALIZING_S", STATUS_INITIALIZING_S))
    initializing = {"Status": "initializing", "Details": [{"Name": "reachability", "Status": "initializing"}]}

    def checked(original: Any) -> property:
        def status(self: Any) -> dict[str, Any]:
            young = (utcnow() - self.launch_time).total_seconds() < seconds
            if self.is_running() and young:
                return dict(initializing)
            result: dict[str, Any] = original.fget(self)
            return result

        return property(status)

    Instance.instance_status = checked(Instance.instance_status)  # type: ignore[method-assign,assignment]
    Instance.system_status = checked(Instance.system_status)  # type: ignore[method-assign,assignment]


def serve() -> None:
    """Run the extended server until stdin closes; print its URL once it listens."""
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    # werkzeug logs every request at INFO: thousands of lines for one upload.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    install_extensions()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


@contextlib.contextmanager
def running(log_path: Path | None = None) -> Iterator[str]:
    """Start the extended moto server in a child process; yield its URL; stop it on exit.

    The child's output (werkzeug, moto warnings) goes to `log_path` (a temporary file when None), never to
    the terminal; its last lines are quoted when it fails to start.
    """
    import factory

    env = dict(os.environ)
    # The child must import this very factory package (a worktree may shadow an installed one).
    here = str(Path(factory.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    env["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    with contextlib.ExitStack() as stack:
        shown = log_path
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="factory-moto-"))) / "log"
        log = stack.enter_context(log_path.open("ab"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "factory.targets.aws.motoserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        try:
            url = _read_url(proc, log_path, shown)
            yield url
        finally:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


def _read_url(proc: subprocess.Popen[bytes], log_path: Path, shown: Path | None) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline().decode().strip()
                if line.startswith("http://127.0.0.1:"):
                    return line
                break
            if proc.poll() is not None:
                break
    proc.kill()
    proc.wait(timeout=10)
    tail = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
    raise AwsError(
        f"the local AWS endpoint (moto) did not start within {STARTUP_TIMEOUT:.0f} s"
        f"{': ' + tail if tail else ''}{f' (log: {shown})' if shown else ''}"
    )


if __name__ == "__main__":
    serve()
