"""The node's own DIMSE SCP: C-ECHO, and C-STORE of C-MOVE sub-operations (or anything else).

It runs as pynetdicom's non-blocking threaded server (one thread per association, up to
``DimseSettings.max_associations``). Received data sets go to disk as they arrive (chunked
receive), are filed by :func:`~drimbox.pacs.handlers.handle_store` and routed by the shared
:class:`~drimbox.pacs.mediator.MoveMediator`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from drimbox.config import DimseSettings, LocalAE, StorageSettings
from drimbox.pacs._library import configure_pynetdicom
from drimbox.pacs.contexts import STUDY_ROOT_GET, VERIFICATION, scp_contexts
from drimbox.pacs.handlers import handle_conn_open, handle_echo, handle_store
from drimbox.pacs.mediator import MoveMediator
from drimbox.pacs.sockets import SocketTuner, tune_socket

__all__ = ["NodeScp", "ScpService", "scp_handlers"]

log = logging.getLogger(__name__)


def scp_handlers(
    mediator: MoveMediator, *, tune: SocketTuner = tune_socket, fsync: bool = True
) -> list[tuple[Any, ...]]:
    """Every event handler of the node's SCP, in one list."""
    return [
        (evt.EVT_CONN_OPEN, handle_conn_open, [tune]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [mediator, fsync]),
    ]


class ScpService(Protocol):
    """A service the node's SCP offers beyond Verification and Storage (e.g. the Q/R face for the
    network's studies, :class:`drimbox.retrieve.dimse_face.DimseFace`): its abstract syntaxes and its
    handlers join the SCP's own, so one AE on one port serves everything a workstation needs."""

    def contexts(self) -> list[PresentationContext]:
        """Presentation contexts to accept (as SCP)."""
        ...

    def handlers(self) -> list[tuple[Any, ...]]:
        """Event handlers, as in :func:`scp_handlers`."""
        ...


class NodeScp:
    """The node's Storage and Verification SCP.

    Parameters
    ----------
    local:
        AE title (the called AE title must match) and listening address.
    dimse:
        Timeouts, maximum PDU size and maximum concurrent associations.
    storage:
        Where the quarantine is (the mediator files there; the directories are created on start).
    mediator:
        Shared with the :class:`~drimbox.pacs.scu.PacsClient` that issues C-MOVEs.
    fsync:
        Flush each file to stable storage before answering Success (default; the sender may then
        delete its copy).
    services:
        Further services on the same AE (their contexts and handlers are added). When one accepts
        Study Root C-GET, storage contexts also accept SCP/SCU role selection, since the C-GET
        requestor receives its C-STORE sub-operations as SCP (PS3.4 C.4.3, PS3.7 D.3.3.4).
    """

    def __init__(
        self,
        local: LocalAE,
        dimse: DimseSettings,
        storage: StorageSettings,
        mediator: MoveMediator,
        *,
        tune: SocketTuner = tune_socket,
        fsync: bool = True,
        services: Sequence[ScpService] = (),
    ) -> None:
        configure_pynetdicom()
        self.local = local
        self.storage = storage
        self.mediator = mediator
        ae = AE(ae_title=local.aet)
        ae.require_called_aet = True
        ae.acse_timeout = dimse.acse_timeout_s
        ae.dimse_timeout = dimse.network_timeout_s
        ae.network_timeout = dimse.network_timeout_s
        ae.maximum_pdu_size = dimse.max_pdu
        ae.maximum_associations = dimse.max_associations
        ae.supported_contexts = scp_contexts()
        extra = [cx for service in services for cx in service.contexts()]
        if any(cx.abstract_syntax == STUDY_ROOT_GET for cx in extra):
            for cx in scp_contexts():
                if cx.abstract_syntax != VERIFICATION:
                    ae.add_supported_context(str(cx.abstract_syntax), cx.transfer_syntax, scu_role=True, scp_role=True)
        for cx in extra:  # roles as the service asks (storage commitment reports come from the PACS as SCP)
            ae.add_supported_context(str(cx.abstract_syntax), cx.transfer_syntax, scu_role=cx.scu_role,
                                     scp_role=cx.scp_role)
        self._ae = ae
        self._handlers = scp_handlers(mediator, tune=tune, fsync=fsync)
        self._handlers += [handler for service in services for handler in service.handlers()]
        self._server: ThreadedAssociationServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port), once started."""
        if self._server is None:
            return (self.local.host, self.local.port)
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def running(self) -> bool:
        """Whether the server accepts associations."""
        return self._server is not None

    def start(self) -> None:
        """Listen on ``local.host:local.port`` and serve in background threads."""
        if self._server is not None:
            return
        self.storage.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self.mediator.quarantine_dir.mkdir(parents=True, exist_ok=True)
        self._server = self._ae.start_server(
            (self.local.host, self.local.port), block=False, evt_handlers=self._handlers
        )
        log.info("DIMSE SCP %s listening on %s:%s", self.local.aet, *self.address)

    def stop(self) -> None:
        """Stop accepting, abort associations in progress, and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        self._ae.shutdown()

    def __enter__(self) -> NodeScp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
