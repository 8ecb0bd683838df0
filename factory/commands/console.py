"""`factory console BUILD`: attach to a running or kept build's serial console.

A VM kept paused by `--keep-on-error` has no client on its serial socket: attach interactively (raw
terminal, Ctrl-] detaches, like `virsh console`). While a build is running the factory itself holds the
socket (QEMU serves one client), so the console is followed read-only from the live transcript instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory.core.record import BuildDir
from factory.errors import UsageError

DETACH = b"\x1d"  # Ctrl-]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "console",
        help="attach to a running or kept build's serial console",
        description="Interactive for a VM kept by --keep-on-error (Ctrl-] detaches); read-only follow of "
        "the transcript while the factory is still running the install.",
    )
    p.add_argument("build", type=Path, metavar="BUILD", help="the build directory (build/<spec>/<build-id>)")
    p.add_argument("--timeout", type=float, default=None, help="stop following after this many seconds")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _raw_terminal() -> Iterator[None]:
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(sock_path: Path, deadline: float | None) -> int:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(sock_path))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"{sock_path}: cannot attach to the serial console ({exc.strerror}); is QEMU still running?"
        ) from None
    print(f"attached to {sock_path}; Ctrl-] detaches", file=sys.stderr)
    out = sys.stdout.buffer
    stdin_fd = sys.stdin.fileno()
    with sock, _raw_terminal():
        sock.sendall(b"\r")  # make the guest print a fresh prompt
        while deadline is None or time.monotonic() < deadline:
            ready, _, _ = select.select([sock, stdin_fd], [], [], 0.5)
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    break  # QEMU closed the console: the VM is gone
                out.write(data)
                out.flush()
            if stdin_fd in ready:
                keys = os.read(stdin_fd, 1024)
                if not keys or DETACH in keys:
                    break
                sock.sendall(keys)
    print("\r\ndetached", file=sys.stderr)
    return 0


def follow(transcript: Path, build: BuildDir, deadline: float | None) -> int:
    print(f"following {transcript} read-only (the factory holds the console); Ctrl-C stops", file=sys.stderr)
    with transcript.open("rb") as fh:
        while deadline is None or time.monotonic() < deadline:
            data = fh.read(65536)
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
                continue
            if not _running(build):
                break
            time.sleep(0.3)
    return 0


def _running(build: BuildDir) -> bool:
    st = BuildDir.open(build.path).stage("install") or {}
    return st.get("status") == "running"


def run(args: argparse.Namespace) -> int:
    build = BuildDir.open(args.build)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    sock = build.console_socket
    transcript = build.console_log
    if _running(build) and transcript.exists():
        return follow(transcript, build, deadline)
    if sock.exists():
        return attach(sock.resolve(), deadline)  # the link names a short path (sun_path: 107 bytes)
    raise UsageError(
        f"{build.path}: no running or kept VM (no console socket); the install transcript is {transcript}"
    )
