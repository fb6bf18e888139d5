"""DIMSE event handlers: plain functions, dependencies passed as handler arguments.

Wired in one place each: :func:`drimbox.pacs.scp.scp_handlers` for the node's SCP, and
:func:`get_handlers` for the C-STORE sub-operations of a C-GET association.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from drimbox.pacs.channel import InstanceChannel
from drimbox.pacs.files import UnfileableInstance, discard, place_instance
from drimbox.pacs.mediator import MoveMediator
from drimbox.pacs.models import RetrievedInstance
from drimbox.pacs.sockets import handle_conn_open
from drimbox.pacs.status import DimseStatus

__all__ = ["get_handlers", "handle_conn_open", "handle_echo", "handle_get_store", "handle_store"]

log = logging.getLogger(__name__)


def handle_echo(event: Event) -> int:
    """C-ECHO: the node is alive (PS3.7 9.1.5)."""
    return int(DimseStatus.SUCCESS)


def _store_request(event: Event) -> C_STORE:
    request = event.request
    if not isinstance(request, C_STORE):  # pragma: no cover - only bound to EVT_C_STORE
        raise TypeError(f"not a C-STORE request: {type(request).__name__}")
    return request


def _receive(event: Event, root: Path, *, fsync: bool) -> RetrievedInstance | int:
    """File the received data set under ``root``; the instance, or the failure status to answer."""
    request = _store_request(event)
    temp = Path(event.dataset_path)
    try:
        return place_instance(
            temp,
            root,
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            fsync=fsync,
        )
    except UnfileableInstance as exc:
        discard(temp)
        log.warning("C-STORE from %s refused: %s", event.assoc.requestor.ae_title, exc)
        return int(DimseStatus.CANNOT_UNDERSTAND)
    except OSError as exc:
        discard(temp)
        log.error("C-STORE from %s not stored: %s", event.assoc.requestor.ae_title, exc)
        return int(DimseStatus.OUT_OF_RESOURCES)


def handle_store(event: Event, mediator: MoveMediator, fsync: bool = True) -> int:
    """C-STORE at the node's SCP: route to the waiting C-MOVE, or file in quarantine (PS3.4 B.2.2).

    The data set is already on disk (chunked receive); it is moved into place, never decoded.
    Returns Success once the file is durably in place, ``OUT_OF_RESOURCES`` (0xA700) when it
    cannot be written, ``CANNOT_UNDERSTAND`` (0xC000) when it cannot be filed.
    """
    request = _store_request(event)
    sop = str(request.AffectedSOPInstanceUID)
    route = mediator.route(
        originator_aet=request.MoveOriginatorApplicationEntityTitle,
        originator_message_id=request.MoveOriginatorMessageID,
        sop_instance_uid=sop,
    )
    result = _receive(event, route.root, fsync=fsync)
    log.debug("C-STORE %s routed by %s", sop, route.matched_by)
    if isinstance(result, int):
        return result
    if route.subscription is None:
        log.warning(
            "C-STORE quarantined: no C-MOVE waits for it (calling AE %s, move originator %s/%s): %s",
            event.assoc.requestor.ae_title,
            request.MoveOriginatorApplicationEntityTitle,
            request.MoveOriginatorMessageID,
            result.path,
        )
    elif not route.subscription.channel.put(result):
        log.info("C-STORE %s kept in %s after its C-MOVE was abandoned", sop, result.path)
    return int(DimseStatus.SUCCESS)


def handle_get_store(event: Event, dest: Path, channel: InstanceChannel, fsync: bool = True) -> int:
    """C-STORE sub-operation of the node's own C-GET: file under ``dest`` and hand over."""
    result = _receive(event, dest, fsync=fsync)
    if isinstance(result, int):
        return result
    channel.put(result)
    return int(DimseStatus.SUCCESS)


def get_handlers(dest: Path, channel: InstanceChannel, *, fsync: bool = True) -> list[tuple[Any, ...]]:
    """Event handlers of a C-GET association (the socket tuning is added by the connector)."""
    return [(evt.EVT_C_STORE, handle_get_store, [dest, channel, fsync])]
