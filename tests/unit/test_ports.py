"""`listening` (scripts/lib/ports.sh and devtools.chaos.faults) reads the kernel's socket
table: it must see a listener, and not see one once it is closed or while only a client
socket holds the port number."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from devtools.chaos.faults import listening

LIB = Path(__file__).resolve().parents[2] / "scripts" / "lib" / "ports.sh"


def _sh(port: int) -> bool:
    return subprocess.run(["bash", "-c", f'. "{LIB}"; listening {port}'],
                          check=False).returncode == 0


def test_a_listener_is_seen_and_a_closed_one_is_not() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        assert listening(port) and _sh(port)
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        local = client.getsockname()[1]  # a port held by a client end only
        assert not listening(local) and not _sh(local)
        client.close()
        accepted.close()
    finally:
        server.close()
    assert not listening(port) and not _sh(port)
