"""Open associations to one peer and turn every way that can fail into the node's exceptions.

pynetdicom returns an ``Association`` whether or not it was established; this module reads *why*
it was not (no TCP connection, A-ASSOCIATE-RJ with its reason, A-ABORT, ACSE timeout, no accepted
presentation context) and raises the matching :mod:`drimbox.errors` class, naming the peer.
Timeouts come from :class:`~drimbox.config.DimseSettings` and :class:`~drimbox.config.RemoteAE`;
the TCP connect is bounded by ``AE.connection_timeout`` (pynetdicom applies it to ``connect()``
only, then clears the socket timeout and relies on its own ACSE/DIMSE/network timers).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext

from drimbox.config import DimseSettings, LocalAE, RemoteAE
from drimbox.errors import (
    AssociationAborted,
    AssociationRejected,
    NoAcceptableContext,
    PacsTimeout,
    PacsUnreachable,
)
from drimbox.pacs._library import configure_pynetdicom
from drimbox.pacs.responses import Link, ResponseLog
from drimbox.pacs.sockets import SocketTuner, handle_conn_open, tune_socket
from drimbox.pacs.watchdog import Watchdog

__all__ = ["Connector", "EventHandlers", "describe_peer"]

log = logging.getLogger(__name__)

EventHandlers = Sequence[tuple[Any, ...]]
"""pynetdicom ``evt_handlers`` items: ``(event, handler)`` or ``(event, handler, [args])``."""

_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def describe_peer(remote: RemoteAE) -> str:
    """``PACS@127.0.0.1:4242``."""
    return f"{remote.aet}@{remote.host}:{remote.port}"


@dataclass
class _Probe:
    """What the connection-level events of one association attempt showed."""

    tune: SocketTuner
    connected: bool = False
    rejection: str | None = None
    """``reason (result, source: …)`` of an A-ASSOCIATE-RJ, as received."""


def _on_conn_open(event: Event, probe: _Probe) -> None:
    probe.connected = True
    handle_conn_open(event, probe.tune)


def _on_pdu_recv(event: Event, probe: _Probe) -> None:
    # Recorded here because pynetdicom may miss it: when the peer closes the connection right after
    # its A-ASSOCIATE-RJ, the requestor can see the closed transport first and only report an abort.
    pdu = getattr(event, "pdu", None)
    if isinstance(pdu, A_ASSOCIATE_RJ):
        probe.rejection = f"{pdu.reason_str} ({pdu.result_str}, source: {pdu.source_str})"


_FAILURE_NAMES: dict[type[Exception], str] = {
    PacsUnreachable: "unreachable", AssociationRejected: "rejected", PacsTimeout: "timeout",
    AssociationAborted: "aborted", NoAcceptableContext: "no-context",
}


class Connector:
    """Opens associations from the node's AE title to one remote AE (thread-safe).

    Parameters
    ----------
    local, remote, dimse:
        Calling AE title (and source address), the peer, and timeouts / PDU size.
    tune:
        Applied to each new socket before the A-ASSOCIATE-RQ (default: ``TCP_NODELAY``).
    on_association:
        Called with ``established`` or the failure (``unreachable``, ``rejected``, ``timeout``,
        ``aborted``, ``no-context``) of each association request (the node's metrics).
    """

    def __init__(
        self, local: LocalAE, remote: RemoteAE, dimse: DimseSettings, *, tune: SocketTuner = tune_socket,
        on_association: Callable[[str], None] | None = None,
    ) -> None:
        configure_pynetdicom()
        self._on_association = on_association
        self.local = local
        self.remote = remote
        self.dimse = dimse
        self._tune = tune
        ae = AE(ae_title=local.aet)
        ae.acse_timeout = dimse.acse_timeout_s
        ae.dimse_timeout = remote.timeout_s
        ae.network_timeout = dimse.network_timeout_s
        ae.connection_timeout = dimse.connect_timeout_s
        ae.maximum_pdu_size = dimse.max_pdu
        self._ae = ae
        self._watchdog = Watchdog(f"drimbox-watchdog-{remote.aet}")
        self._bind = ("" if local.host in _WILDCARD_HOSTS else local.host, 0)

    @property
    def peer(self) -> str:
        """The peer, for messages."""
        return describe_peer(self.remote)

    def associate(
        self,
        contexts: Sequence[PresentationContext],
        *,
        ext_neg: Sequence[Any] = (),
        evt_handlers: EventHandlers = (),
    ) -> Link:
        """Request an association proposing ``contexts``; return it established, with its response log.

        Raises
        ------
        PacsUnreachable
            No TCP connection (refused, no route, name not resolved, connect timeout).
        AssociationRejected
            A-ASSOCIATE-RJ; the message gives the peer's reason (e.g. called AE title not recognised).
        PacsTimeout
            Connected, but no A-ASSOCIATE response within the ACSE timeout.
        AssociationAborted
            The peer aborted or closed the connection during negotiation.
        NoAcceptableContext
            The peer accepted none of ``contexts``.
        """
        probe = _Probe(self._tune)
        log = ResponseLog(self._watchdog)
        handlers: list[tuple[Any, ...]] = [
            (evt.EVT_CONN_OPEN, _on_conn_open, [probe]),
            (evt.EVT_PDU_RECV, _on_pdu_recv, [probe]),
            (evt.EVT_DIMSE_RECV, log.record),
            *evt_handlers,
        ]
        started = time.monotonic()
        try:
            assoc = self._ae.associate(
                self.remote.host,
                self.remote.port,
                contexts=list(contexts),
                ae_title=self.remote.aet,
                max_pdu=self.dimse.max_pdu,
                ext_neg=list(ext_neg) or None,
                bind_address=self._bind,
                evt_handlers=handlers,
            )
        except (socket.gaierror, OSError) as exc:
            self._observed("unreachable")
            raise PacsUnreachable(f"{self.peer}: cannot connect ({exc})") from exc
        if assoc.is_established:
            self._observed("established")
            return Link(assoc, log)
        elapsed = time.monotonic() - started
        failure = self._failure(assoc, probe, elapsed)
        self._observed(_FAILURE_NAMES.get(type(failure), "aborted"))
        raise failure

    def _observed(self, outcome: str) -> None:
        if self._on_association is not None:
            self._on_association(outcome)

    def _failure(self, assoc: Association, probe: _Probe, elapsed: float) -> Exception:
        peer = self.peer
        if not probe.connected:
            if elapsed >= self.dimse.connect_timeout_s * 0.9:
                why = f"no answer to the TCP connection within {self.dimse.connect_timeout_s:g} s"
            else:
                why = "connection refused or no route"
            return PacsUnreachable(f"{peer}: {why}")
        if probe.rejection is not None:
            return AssociationRejected(f"{peer} rejected the association from {self.local.aet}: {probe.rejection}")
        if elapsed >= self.dimse.acse_timeout_s * 0.9:
            return PacsTimeout(f"{peer} did not answer the association request within {self.dimse.acse_timeout_s:g} s")
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            return NoAcceptableContext(
                f"{peer} accepted none of the {len(assoc.rejected_contexts)} presentation contexts proposed"
            )
        return AssociationAborted(f"{peer} aborted the association during negotiation")

    def shutdown(self) -> None:
        """Stop every association this connector opened (they are normally released already)."""
        self._ae.shutdown()
