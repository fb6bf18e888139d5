"""Socket tuning for DIMSE connections, applied from pynetdicom's public ``EVT_CONN_OPEN`` event.

DIMSE is a request/response protocol of small messages: with Nagle's algorithm on, a response
that fits in one segment waits for the ACK of the previous one, which the peer delays (~40 ms on
Linux). pynetdicom 3.0 has no socket option setting, but it triggers ``EVT_CONN_OPEN`` right after
``connect()`` (requestor) or ``accept()`` (acceptor) and *before* the first PDU, with the socket at
``event.assoc.dul.socket.socket``. :func:`handle_conn_open` sets ``TCP_NODELAY`` there.

Receive buffers are left to the kernel: Linux autotunes them, and setting ``SO_RCVBUF`` after the
handshake would both disable autotuning and be too late to change the negotiated window scale.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from pynetdicom.events import Event

__all__ = ["SocketTuner", "handle_conn_open", "no_tuning", "tune_socket"]

log = logging.getLogger(__name__)

SocketTuner = Callable[[socket.socket], None]
"""Applies options to a freshly connected or accepted socket."""


def tune_socket(sock: socket.socket) -> None:
    """Disable Nagle's algorithm on a DIMSE socket."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def no_tuning(sock: socket.socket) -> None:
    """Leave the socket as the library made it (for measurements)."""


def event_socket(event: Event) -> socket.socket | None:
    """The TCP socket of the association that triggered ``event``, if it still has one."""
    transport: Any = getattr(event.assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    return sock if isinstance(sock, socket.socket) else None


def handle_conn_open(event: Event, tune: SocketTuner = tune_socket) -> None:
    """``EVT_CONN_OPEN`` handler: apply ``tune`` before the association exchanges any PDU."""
    sock = event_socket(event)
    if sock is None:  # pragma: no cover - pynetdicom always sets it before the event
        log.warning("EVT_CONN_OPEN without a socket; TCP options not set")
        return
    try:
        tune(sock)
    except OSError as exc:  # e.g. the peer already reset the connection
        log.warning("cannot set TCP options on %s: %s", getattr(event, "address", "?"), exc)
