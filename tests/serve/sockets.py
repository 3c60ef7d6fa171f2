"""Socket helpers shared by the server tests."""
from __future__ import annotations

import socket
import time


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes `sock` (recv returns b"" or the connection resets); inf
    when it is still open after `limit` seconds."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return float("inf")
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return time.monotonic() - start
