"""A record of every DIMSE response an association receives, taken from ``EVT_DIMSE_RECV``.

Why it exists: pynetdicom 3.0.4's association reactor keeps polling the incoming message queue
between requests, and ``send_c_*`` pauses it with a check (``_is_paused``) that can pass while the
reactor is already past its pause point. The reactor then takes the first response of the new
request off the queue, finds it is not a request, logs "Received unexpected C-FIND service
message" and drops it (pydicom/pynetdicom#875). The request never sees it: a C-FIND silently
loses a match, and a request whose *only* response was taken (C-ECHO, C-STORE, a C-FIND without
match, a refused C-MOVE) waits for the whole DIMSE timeout, then aborts. Measured here: about one
request in 500 on a busy association (a 2 000-file C-STORE never got through).

The fix that belongs in pynetdicom is a reactor pause that cannot be passed early. Without
touching its code, the node makes the loss harmless:

- ``EVT_DIMSE_RECV`` is triggered by the DUL thread for every complete message *before* it is
  queued, so this log is complete whoever dequeues the message; identifiers, sub-operation counts
  and final statuses are read from here, pynetdicom's generators only pace the request;
- when a request's final response is logged but its requester has not taken it within
  :data:`THEFT_GRACE_S`, the response was taken by the reactor: the requester is woken with the
  sentinel pynetdicom itself queues when a connection drops, ``(None, None)`` on the documented
  ``DIMSEServiceProvider.msg_queue``. pynetdicom then reports "no response" and aborts the
  association; the exchange helpers find the final response in this log and complete normally,
  and the association (now flagged :attr:`ResponseLog.tainted`) is never reused.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from io import BytesIO

from pydicom import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_ECHO_RSP, C_FIND_RSP, C_GET_RSP, C_MOVE_RSP, C_STORE_RSP
from pynetdicom.dsutils import decode
from pynetdicom.events import Event
from pynetdicom.status import STATUS_PENDING, code_to_category

from drimbox.pacs.watchdog import Watchdog

__all__ = ["THEFT_GRACE_S", "Link", "Response", "ResponseLog"]

log = logging.getLogger(__name__)

THEFT_GRACE_S = 0.25
"""How long a logged final response may wait for its requester before it is deemed taken."""

_RESPONSES = (C_ECHO_RSP, C_FIND_RSP, C_GET_RSP, C_MOVE_RSP, C_STORE_RSP)


@dataclass(frozen=True)
class Response:
    """One response message as received."""

    status: int
    command: Dataset
    """The command set (status, sub-operation counts, error comment...)."""
    identifier: bytes
    """The encoded identifier (empty when the message has none)."""
    context_id: int

    @property
    def pending(self) -> bool:
        """Whether more responses follow."""
        return code_to_category(self.status) == STATUS_PENDING


class ResponseLog:
    """Responses received on one association, by the Message ID they answer (thread-safe).

    Requests are bracketed by :meth:`begin` and :meth:`end`; a final response that arrives for a
    request still open after :data:`THEFT_GRACE_S` triggers the recovery described above.
    """

    def __init__(self, watchdog: Watchdog) -> None:
        self._watchdog = watchdog
        self._lock = threading.Lock()
        self._by_id: defaultdict[int, list[Response]] = defaultdict(list)
        self._open: set[int] = set()
        self.tainted = False
        """Set once a stolen response was recovered: the association must not be reused."""

    def begin(self, msg_id: int) -> None:
        """A request with this Message ID is about to be sent."""
        with self._lock:
            self._open.add(msg_id)
            self._by_id.pop(msg_id, None)

    def end(self, msg_id: int) -> None:
        """The requester has its final response (or gave up): forget the request."""
        with self._lock:
            self._open.discard(msg_id)
            self._by_id.pop(msg_id, None)

    def record(self, event: Event) -> None:
        """``EVT_DIMSE_RECV`` handler (runs in the DUL thread)."""
        message = getattr(event, "message", None)
        if not isinstance(message, _RESPONSES):
            return
        command = message.command_set
        msg_id = command.get("MessageIDBeingRespondedTo")
        if msg_id is None or "Status" not in command:
            return
        identifier = message.data_set.getvalue() if message.data_set is not None else b""
        response = Response(int(command.Status), command, identifier, int(message.context_id or 0))
        with self._lock:
            if int(msg_id) not in self._open:
                return
            self._by_id[int(msg_id)].append(response)
        if not response.pending:
            assoc = event.assoc
            self._watchdog.schedule(THEFT_GRACE_S, lambda: self._check_taken(assoc, int(msg_id)))

    def _check_taken(self, assoc: Association, msg_id: int) -> None:
        with self._lock:
            if msg_id not in self._open:
                return
            self.tainted = True
        log.warning(
            "pynetdicom's reactor took the final response to message %d (pydicom/pynetdicom#875); "
            "recovered from the response log, the association will not be reused",
            msg_id,
        )
        assoc.dimse.msg_queue.put((None, None))

    def responses(self, msg_id: int) -> list[Response]:
        """Everything received so far for ``msg_id``, in order."""
        with self._lock:
            return list(self._by_id.get(msg_id, ()))

    def final(self, msg_id: int) -> Response | None:
        """The final (non-pending) response for ``msg_id``, if received."""
        return next((r for r in self.responses(msg_id) if not r.pending), None)


@dataclass(frozen=True)
class Link:
    """An established association and the log of the responses it received."""

    assoc: Association
    log: ResponseLog

    @property
    def reusable(self) -> bool:
        """Whether the association may serve another request."""
        return self.assoc.is_established and not self.log.tainted

    def decode(self, response: Response) -> Dataset:
        """The response's identifier, decoded in its presentation context's transfer syntax."""
        syntax = next(
            cx.transfer_syntax[0] for cx in self.assoc.accepted_contexts if cx.context_id == response.context_id
        )
        return decode(BytesIO(response.identifier), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
