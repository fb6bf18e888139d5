"""Pick free TCP ports and wait for servers to accept connections."""

from __future__ import annotations

import socket
import time

__all__ = ["free_port", "wait_for_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    The kernel picks it (bind to port 0); the socket is closed before returning, so another process
    could in principle take the port before the caller binds it. Within one test session on loopback
    that race is negligible, and it beats hard-coded ports that collide between parallel runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # No listen(): the probe never accepts anything, even when ``host`` is a wildcard address.
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connection to ``host:port`` succeeds.

    Raises
    ------
    TimeoutError
        When nothing accepts a connection within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.05, min(1.0, timeout))):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing accepted a connection on {host}:{port} within {timeout:g} s") from exc
        # Short, growing sleeps: servers here start in ~0.1 s and we do not want to add latency.
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
