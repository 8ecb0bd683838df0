"""One guest connection to the metadata server: the `cmd:` end of QEMU's `guestfwd`, stdlib only.

libslirp starts this command once per guest TCP connection with the connection as stdin and stdout
(one socket on fds 0 and 1). It connects to the factory's server on 127.0.0.1:PORT and copies bytes both
ways until either side closes. Run as `python3 relay.py PORT` (a file path, not `-m`, so that it needs
neither the factory on sys.path nor its import time for every request the guest makes).
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

CHUNK = 65536


def relay(guest_in: int, guest_out: int, upstream: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(guest_in, selectors.EVENT_READ, "guest")
    sel.register(upstream, selectors.EVENT_READ, "server")
    guest_open = True
    while True:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(guest_in, CHUNK)
                if not data:
                    # The guest finished sending: tell the server, keep reading its answer.
                    sel.unregister(guest_in)
                    guest_open = False
                    upstream.shutdown(socket.SHUT_WR)
                    continue
                upstream.sendall(data)
            else:
                data = upstream.recv(CHUNK)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(guest_out, view) :]
        if not guest_open and not sel.get_map():
            return


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: relay.py PORT", file=sys.stderr)
        return 2
    with socket.create_connection(("127.0.0.1", int(argv[1])), timeout=30) as upstream:
        upstream.settimeout(None)
        try:
            relay(0, 1, upstream)
        except (BrokenPipeError, ConnectionResetError):
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
