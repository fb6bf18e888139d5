"""Storage Commitment Push Model (PS3.4 Annex J), SCU side: ask the PACS to commit, hear its answer.

Why: an import (F8) may only be reported done once the PACS has taken responsibility for the
instances, not merely acknowledged each C-STORE. The node sends an N-ACTION-RQ (action type 1)
naming every instance under a fresh Transaction UID; the PACS answers the N-ACTION at once and
reports the outcome later with an N-EVENT-REPORT-RQ (event 1: all committed, 2: failures exist).
Orthanc (and most PACSes) send that report on a *new* association to the node's AE title, with SCP/SCU
role selection proposing itself as SCP of the SOP class; so the node's SCP must accept the
Storage Commitment context with both roles allowed, and route each report to the import waiting
for it by Transaction UID — :class:`CommitmentRegistry` does both as a
:class:`~drimbox.pacs.scp.ScpService` (``NodeScp(..., services=[registry])``).

A process that does not run the node's SCP (the command line while the node is stopped) can open
:class:`CommitmentListener`, a minimal SCP on the node's address that accepts only this context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from drimbox.config import DimseSettings, LocalAE
from drimbox.pacs._library import configure_pynetdicom
from drimbox.pacs.connect import Connector
from drimbox.pacs.mediator import MessageIds
from drimbox.pacs.status import DimseStatus

__all__ = [
    "STORAGE_COMMITMENT_INSTANCE",
    "STORAGE_COMMITMENT_PUSH",
    "CommitmentListener",
    "CommitmentRegistry",
    "CommitmentRequest",
    "CommitmentResult",
    "handle_commitment_report",
    "request_commitment",
]

log = logging.getLogger(__name__)

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class."""
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Its well-known SOP Instance (PS3.4 J.3.5)."""

_REQUEST_COMMITMENT = 1
"""N-ACTION Action Type ID: Request Storage Commitment."""
_SYNTAXES: list[str | UID] = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]

FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0213: "resource limitation",
    0x0122: "referenced SOP class not supported",
    0x0119: "class / instance conflict",
    0x0131: "duplicate transaction UID",
}
"""Failure Reason (0008,1197) values (PS3.3 C.14.1.1)."""


@dataclass(frozen=True, slots=True)
class CommitmentResult:
    """What the PACS reported for one transaction."""

    transaction_uid: str
    committed: tuple[str, ...]
    """SOP Instance UIDs the PACS committed to keep."""
    failed: tuple[tuple[str, str], ...]
    """(SOP Instance UID, reason) the PACS did not commit."""
    reporter: str = ""
    """Calling AE title of the association that brought the report."""


def _parse_report(info: Dataset, reporter: str) -> CommitmentResult:
    committed = tuple(str(item.ReferencedSOPInstanceUID) for item in info.get("ReferencedSOPSequence", []))
    failed = []
    for item in info.get("FailedSOPSequence", []):
        code = item.get("FailureReason")
        reason = FAILURE_REASONS.get(int(code), f"failure reason 0x{int(code):04X}") if code is not None \
            else "no reason given"
        failed.append((str(item.ReferencedSOPInstanceUID), reason))
    return CommitmentResult(str(info.get("TransactionUID", "")), committed, tuple(failed), reporter)


@dataclass(eq=False)
class CommitmentRequest:
    """One transaction waiting for its N-EVENT-REPORT."""

    transaction_uid: str
    _done: threading.Event = field(default_factory=threading.Event)
    result: CommitmentResult | None = None

    def wait(self, timeout_s: float) -> CommitmentResult | None:
        """The PACS's report, or ``None`` when it did not come within ``timeout_s``."""
        self._done.wait(timeout_s)
        return self.result


class CommitmentRegistry:
    """Pending storage commitment transactions, by Transaction UID; an :class:`ScpService`.

    Reports for unknown transactions (late, after a timeout, or for another process) are logged
    and acknowledged: the PACS did its part, and refusing would only make it retry.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, CommitmentRequest] = {}

    @contextmanager
    def expect(self, transaction_uid: str) -> Iterator[CommitmentRequest]:
        """Register a transaction *before* its N-ACTION is sent (the report may beat the N-ACTION response)."""
        request = CommitmentRequest(transaction_uid)
        with self._lock:
            if transaction_uid in self._pending:
                raise ValueError(f"transaction {transaction_uid} is already pending")
            self._pending[transaction_uid] = request
        try:
            yield request
        finally:
            with self._lock:
                self._pending.pop(transaction_uid, None)

    def deliver(self, result: CommitmentResult) -> bool:
        """Hand a report to its waiting transaction; ``False`` when none waits for it."""
        with self._lock:
            request = self._pending.get(result.transaction_uid)
        if request is None:
            return False
        request.result = result
        request._done.set()
        return True

    # -- ScpService ----------------------------------------------------------------------------

    def contexts(self) -> list[PresentationContext]:
        """Storage Commitment Push Model, both roles allowed: the reporting PACS proposes itself as SCP."""
        context = build_context(STORAGE_COMMITMENT_PUSH, _SYNTAXES)
        context.scu_role = True
        context.scp_role = True
        return [context]

    def handlers(self) -> list[tuple[Any, ...]]:
        return [(evt.EVT_N_EVENT_REPORT, handle_commitment_report, [self])]


def handle_commitment_report(event: Event, registry: CommitmentRegistry) -> tuple[int, Dataset | None]:
    """N-EVENT-REPORT of a storage commitment: route it by Transaction UID, answer Success.

    A report of another SOP class, or with unreadable event information, is answered "processing
    failure" (0x0110) rather than guessed at.
    """
    request = event.request
    if str(getattr(request, "AffectedSOPClassUID", "")) != STORAGE_COMMITMENT_PUSH:
        return int(DimseStatus.PROCESSING_FAILURE), None
    try:
        info = event.event_information
    except Exception as exc:  # malformed encoding: say so to the PACS and in the log
        log.warning("storage commitment report from %s unreadable: %s", event.assoc.requestor.ae_title, exc)
        return int(DimseStatus.PROCESSING_FAILURE), None
    result = _parse_report(info, str(event.assoc.requestor.ae_title))
    if not registry.deliver(result):
        log.warning("storage commitment report for unknown transaction %s from %s (%d committed, %d failed)",
                    result.transaction_uid, result.reporter, len(result.committed), len(result.failed))
    return int(DimseStatus.SUCCESS), None


def request_commitment(
    connector: Connector,
    registry: CommitmentRegistry,
    references: Sequence[tuple[str, str]],
    *,
    timeout_s: float,
    message_ids: MessageIds | None = None,
) -> tuple[CommitmentResult | None, str | None]:
    """Ask the PACS to commit ``references`` ((SOP Class UID, SOP Instance UID) pairs) and wait.

    Returns the PACS's report (``None`` if none came within ``timeout_s``) and, when the N-ACTION
    itself went wrong, why. A lost or refused N-ACTION response does not stop the wait when the
    association worked: a PACS that queued the request still reports (pynetdicom can drop a
    response, see :mod:`drimbox.pacs.responses`).

    Raises
    ------
    PacsError
        When no association accepting the Storage Commitment context can be opened.
    """
    transaction_uid = generate_uid()
    request = Dataset()
    request.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    request.ReferencedSOPSequence = items
    problem: str | None = None
    with registry.expect(transaction_uid) as pending:
        link = connector.associate([build_context(STORAGE_COMMITMENT_PUSH, _SYNTAXES)])
        try:
            msg_id = (message_ids or MessageIds()).next()
            status, _reply = link.assoc.send_n_action(request, _REQUEST_COMMITMENT, STORAGE_COMMITMENT_PUSH,
                                                      STORAGE_COMMITMENT_INSTANCE, msg_id=msg_id)
        finally:
            if link.assoc.is_established:
                link.assoc.release()
        code = int(status.Status) if status is not None and "Status" in status else None
        if code is None:
            problem = f"{connector.peer} sent no N-ACTION response to the storage commitment request"
        elif code != 0x0000:
            problem = f"{connector.peer} refused the storage commitment request (status 0x{code:04X})"
            return None, problem
        log.info("storage commitment %s requested from %s for %d instance(s)", transaction_uid, connector.peer,
                 len(references))
        return pending.wait(timeout_s), problem


class CommitmentListener:
    """A minimal SCP on the node's address that hears storage commitment reports only.

    For a process that does not run :class:`~drimbox.pacs.scp.NodeScp` (the command line); it
    cannot start while the node listens on the same address (``OSError``).
    """

    def __init__(self, local: LocalAE, dimse: DimseSettings, registry: CommitmentRegistry) -> None:
        configure_pynetdicom()
        self.local = local
        self.registry = registry
        ae = AE(ae_title=local.aet)
        ae.require_called_aet = True
        ae.acse_timeout = dimse.acse_timeout_s
        ae.dimse_timeout = dimse.network_timeout_s
        ae.network_timeout = dimse.network_timeout_s
        ae.add_supported_context(STORAGE_COMMITMENT_PUSH, _SYNTAXES, scu_role=True, scp_role=True)
        self._ae = ae
        self._server: ThreadedAssociationServer | None = None

    def __enter__(self) -> CommitmentListener:
        self._server = self._ae.start_server((self.local.host, self.local.port), block=False,
                                             evt_handlers=self.registry.handlers())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._ae.shutdown()
