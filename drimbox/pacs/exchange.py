"""One DIMSE request on an established association, its responses read and checked.

pynetdicom signals "no response" with an empty status ``Dataset`` (DIMSE timeout, or the peer
aborted / closed the connection); these helpers turn that into :class:`~drimbox.errors.PacsTimeout`
or :class:`~drimbox.errors.AssociationAborted`, and failure statuses into
:class:`~drimbox.errors.DimseFailure` naming the status (PS3.7 Annex C).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom.association import Association
from pynetdicom.status import STATUS_CANCEL, STATUS_FAILURE, STATUS_PENDING, STATUS_SUCCESS, STATUS_WARNING

from drimbox.errors import AssociationAborted, DimseFailure, PacsTimeout
from drimbox.pacs.channel import RetrieveOutcome
from drimbox.pacs.contexts import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from drimbox.pacs.status import DimseStatus, Service, category, describe

__all__ = ["Exchange", "RetrieveModel"]


@dataclass(frozen=True)
class RetrieveModel:
    """C-GET or C-MOVE, Study Root."""

    name: str
    sop_class: str
    service: dict[int, tuple[str, str]]


GET = RetrieveModel("C-GET", STUDY_ROOT_GET, Service.GET)
MOVE = RetrieveModel("C-MOVE", STUDY_ROOT_MOVE, Service.MOVE)


@dataclass(frozen=True)
class Exchange:
    """Request helpers bound to one peer's name and DIMSE timeout (for messages and diagnosis)."""

    peer: str
    dimse_timeout_s: float
    calling_aet: str = ""

    def silence(self, assoc: Association, waited: float, what: str) -> Exception:
        """The error for "no response": a timeout if we waited that long, else the peer left."""
        if waited >= self.dimse_timeout_s * 0.9:
            return PacsTimeout(f"{self.peer} sent no {what} response within {self.dimse_timeout_s:g} s")
        assoc.abort()
        hint = f" (does it know the AE title {self.calling_aet} and allow it {what}?)" if self.calling_aet else ""
        return AssociationAborted(f"{self.peer} aborted the association or closed the connection during {what}{hint}")

    def echo(self, assoc: Association, msg_id: int) -> None:
        """C-ECHO (PS3.7 9.1.5); returns on Success."""
        started = time.monotonic()
        status = assoc.send_c_echo(msg_id=msg_id)
        if "Status" not in status:
            raise self.silence(assoc, time.monotonic() - started, "C-ECHO")
        code = int(status.Status)
        if code != 0:
            raise DimseFailure(f"{self.peer} answered C-ECHO with {describe(code, Service.ECHO)}", status=code)

    def find(self, assoc: Association, query: Dataset, msg_id: int) -> Iterator[Dataset]:
        """C-FIND (PS3.4 C.4.1): yield each pending identifier; return on Success.

        Closing the generator early sends C-CANCEL and reads the remaining responses, so that the
        association can serve the next request (if that fails, it is aborted).
        """
        responses = assoc.send_c_find(query, STUDY_ROOT_FIND, msg_id=msg_id)
        finished = False
        try:
            while True:
                started = time.monotonic()
                try:
                    status, identifier = next(responses)
                except StopIteration:
                    finished = True
                    return
                if "Status" not in status:
                    finished = True
                    raise self.silence(assoc, time.monotonic() - started, "C-FIND")
                code = int(status.Status)
                kind = category(code)
                if kind == STATUS_PENDING:
                    if identifier is not None:
                        yield identifier
                    continue
                finished = True
                if kind in (STATUS_SUCCESS, STATUS_WARNING):
                    return
                if kind == STATUS_CANCEL:
                    raise DimseFailure(
                        f"{self.peer} cancelled the C-FIND ({describe(code, Service.FIND)})", status=code
                    )
                raise DimseFailure(
                    f"{self.peer} refused the C-FIND: {describe(code, Service.FIND)}{_error_comment(status)}",
                    status=code,
                )
        finally:
            if not finished:
                self._cancel_and_drain(assoc, responses, msg_id)

    def _cancel_and_drain(
        self, assoc: Association, responses: Iterator[tuple[Dataset, Dataset | None]], msg_id: int
    ) -> None:
        if not assoc.is_established:
            return
        assoc.send_c_cancel(msg_id, query_model=STUDY_ROOT_FIND)
        for status, _ in responses:
            if "Status" not in status:
                assoc.abort()
                return

    def retrieve(
        self,
        assoc: Association,
        model: RetrieveModel,
        identifier: Dataset,
        msg_id: int,
        *,
        move_destination: str | None = None,
    ) -> RetrieveOutcome:
        """C-GET or C-MOVE (PS3.4 C.4.2, C.4.3) until the final response; sub-operations are
        handled meanwhile by the association's handlers (C-GET) or the node's SCP (C-MOVE)."""
        if model is MOVE:
            if move_destination is None:
                raise ValueError("a C-MOVE needs a destination AE title")
            responses = assoc.send_c_move(identifier, move_destination, model.sop_class, msg_id=msg_id)
        else:
            responses = assoc.send_c_get(identifier, model.sop_class, msg_id=msg_id)
        while True:
            started = time.monotonic()
            try:
                status, final_identifier = next(responses)
            except StopIteration:  # pragma: no cover - pynetdicom always yields a final status
                raise AssociationAborted(f"{self.peer}: {model.name} ended without a final response") from None
            if "Status" not in status:
                raise self.silence(assoc, time.monotonic() - started, model.name)
            code = int(status.Status)
            if category(code) == STATUS_PENDING:
                continue
            return _outcome(status, final_identifier)

    def check_retrieve(self, model: RetrieveModel, outcome: RetrieveOutcome, *, received: int) -> None:
        """Raise :class:`DimseFailure` when the request failed outright (nothing retrieved)."""
        code = outcome.status
        if code is None or received or outcome.completed or outcome.warning:
            return
        if category(code) in (STATUS_FAILURE, STATUS_CANCEL):
            hint = ""
            if code == DimseStatus.MOVE_DESTINATION_UNKNOWN:
                hint = " (the PACS does not know the node's AE title as a move destination)"
            raise DimseFailure(
                f"{self.peer} refused the {model.name}: {describe(code, model.service)}{hint}", status=code
            )


def _error_comment(status: Dataset) -> str:
    comment = status.get("ErrorComment")
    return f": {comment}" if comment else ""


def _outcome(status: Dataset, identifier: Dataset | None) -> RetrieveOutcome:
    failed_uids: tuple[str, ...] = ()
    if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
        value = identifier.FailedSOPInstanceUIDList
        failed_uids = tuple(str(v) for v in (value if isinstance(value, list | tuple) else [value]) if v)
    return RetrieveOutcome(
        status=int(status.Status),
        completed=int(status.get("NumberOfCompletedSuboperations") or 0),
        failed=int(status.get("NumberOfFailedSuboperations") or 0),
        warning=int(status.get("NumberOfWarningSuboperations") or 0),
        failed_sop_instance_uids=failed_uids,
        counts_reported="NumberOfCompletedSuboperations" in status,
    )
