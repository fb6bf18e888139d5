"""One DIMSE request on an established association, its responses read and checked.

Responses are read from the association's :class:`~drimbox.pacs.responses.ResponseLog` (complete
even when pynetdicom's reactor steals one, see that module); pynetdicom's response generators pace
the request. "No response" (DIMSE timeout, or the peer aborted / closed the connection) becomes
:class:`~drimbox.errors.PacsTimeout` or :class:`~drimbox.errors.AssociationAborted`, and failure
statuses :class:`~drimbox.errors.DimseFailure` naming the status (PS3.7 Annex C).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset
from pynetdicom.status import STATUS_CANCEL, STATUS_FAILURE, STATUS_PENDING, STATUS_SUCCESS, STATUS_WARNING

from drimbox.errors import AssociationAborted, DimseFailure, PacsTimeout
from drimbox.pacs.channel import RetrieveOutcome
from drimbox.pacs.contexts import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from drimbox.pacs.responses import Link, Response
from drimbox.pacs.status import DimseStatus, Service, category, describe

__all__ = ["GET", "MOVE", "Exchange", "RetrieveModel"]


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
    """Request helpers bound to one peer's name, DIMSE timeout and our AE title (for messages)."""

    peer: str
    dimse_timeout_s: float
    calling_aet: str = ""

    def silence(self, link: Link, waited: float, what: str) -> Exception:
        """The error for "no response": a timeout if we waited that long, else the peer left."""
        if waited >= self.dimse_timeout_s * 0.9:
            return PacsTimeout(f"{self.peer} sent no {what} response within {self.dimse_timeout_s:g} s")
        link.assoc.abort()
        hint = f" (does it know the AE title {self.calling_aet} and allow it {what}?)" if self.calling_aet else ""
        return AssociationAborted(f"{self.peer} aborted the association or closed the connection during {what}{hint}")

    def _final_or_silence(self, link: Link, msg_id: int, waited: float, what: str) -> Response:
        """After pynetdicom reported no response: the final response if it came all the same.

        It did when pynetdicom's reactor took it (see :mod:`~drimbox.pacs.responses`); pynetdicom
        has then aborted the association after its DIMSE timeout, but the request succeeded.
        """
        final = link.log.final(msg_id)
        if final is None:
            raise self.silence(link, waited, what)
        return final

    def echo(self, link: Link, msg_id: int) -> None:
        """C-ECHO (PS3.7 9.1.5); returns on Success."""
        started = time.monotonic()
        link.log.begin(msg_id)
        try:
            status = link.assoc.send_c_echo(msg_id=msg_id)
            code = (
                int(status.Status)
                if "Status" in status
                else self._final_or_silence(link, msg_id, time.monotonic() - started, "C-ECHO").status
            )
        finally:
            link.log.end(msg_id)
        if code != DimseStatus.SUCCESS:
            raise DimseFailure(f"{self.peer} answered C-ECHO with {describe(code, Service.ECHO)}", status=code)

    def store(self, link: Link, path: Path, msg_id: int) -> int:
        """C-STORE one file, streamed as stored (PS3.4 B.2); returns the response status.

        Raises ``ValueError`` (from pynetdicom) when no accepted context matches the file exactly.
        """
        started = time.monotonic()
        link.log.begin(msg_id)
        try:
            status = link.assoc.send_c_store(path, msg_id=msg_id)
            if "Status" in status:
                return int(status.Status)
            return self._final_or_silence(link, msg_id, time.monotonic() - started, "C-STORE").status
        finally:
            link.log.end(msg_id)

    def find(self, link: Link, query: Dataset, msg_id: int) -> Generator[Dataset, None, None]:
        """C-FIND (PS3.4 C.4.1): yield each matching identifier; return on Success.

        Closing the generator early sends C-CANCEL and reads the remaining responses, so that the
        association can serve the next request (if that fails, it is aborted).
        """
        link.log.begin(msg_id)
        try:
            responses = link.assoc.send_c_find(query, STUDY_ROOT_FIND, msg_id=msg_id)
        except BaseException:
            link.log.end(msg_id)
            raise
        yielded = 0
        done = False  # pynetdicom's generator has given its last response (or gave up)
        try:
            while not done:
                started = time.monotonic()
                status, _ = next(responses)
                if "Status" in status:
                    done = category(int(status.Status)) != STATUS_PENDING
                    final = link.log.final(msg_id) if done else None
                else:
                    done = True
                    final = self._final_or_silence(link, msg_id, time.monotonic() - started, "C-FIND")
                matches = [r for r in link.log.responses(msg_id) if r.pending]
                for response in matches[yielded:]:
                    yielded += 1
                    yield link.decode(response)
            assert final is not None  # logged before pynetdicom queued it
            self._check_find(final)
        finally:
            if not done:
                self._cancel_and_drain(link, responses, msg_id)
            link.log.end(msg_id)

    def _check_find(self, final: Response) -> None:
        code = final.status
        kind = category(code)
        if kind in (STATUS_SUCCESS, STATUS_WARNING):
            return
        comment = final.command.get("ErrorComment")
        detail = f": {comment}" if comment else ""
        if kind == STATUS_CANCEL:
            raise DimseFailure(f"{self.peer} cancelled the C-FIND ({describe(code, Service.FIND)})", status=code)
        raise DimseFailure(f"{self.peer} refused the C-FIND: {describe(code, Service.FIND)}{detail}", status=code)

    def _cancel_and_drain(self, link: Link, responses: Iterator[tuple[Dataset, Dataset | None]], msg_id: int) -> None:
        assoc = link.assoc
        if not assoc.is_established:
            return
        assoc.send_c_cancel(msg_id, query_model=STUDY_ROOT_FIND)
        for status, _ in responses:
            if "Status" not in status and link.log.final(msg_id) is None:
                assoc.abort()
                return

    def retrieve(
        self,
        link: Link,
        model: RetrieveModel,
        identifier: Dataset,
        msg_id: int,
        *,
        move_destination: str | None = None,
    ) -> RetrieveOutcome:
        """C-GET or C-MOVE (PS3.4 C.4.2, C.4.3) until the final response; sub-operations are
        handled meanwhile by the association's handlers (C-GET) or the node's SCP (C-MOVE)."""
        assoc = link.assoc
        link.log.begin(msg_id)
        try:
            if model is MOVE:
                if move_destination is None:
                    raise ValueError("a C-MOVE needs a destination AE title")
                responses = assoc.send_c_move(identifier, move_destination, model.sop_class, msg_id=msg_id)
            else:
                responses = assoc.send_c_get(identifier, model.sop_class, msg_id=msg_id)
            while True:
                started = time.monotonic()
                status, _ = next(responses)
                if "Status" not in status:
                    waited = time.monotonic() - started
                    return _outcome(link, self._final_or_silence(link, msg_id, waited, model.name))
                if category(int(status.Status)) != STATUS_PENDING:
                    final = link.log.final(msg_id)
                    assert final is not None  # logged before pynetdicom queued it
                    return _outcome(link, final)
        finally:
            link.log.end(msg_id)

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


def _outcome(link: Link, final: Response) -> RetrieveOutcome:
    command = final.command
    failed_uids: tuple[str, ...] = ()
    if final.identifier:
        identifier = link.decode(final)
        value = identifier.get("FailedSOPInstanceUIDList")
        if value:
            failed_uids = tuple(str(v) for v in (value if isinstance(value, list | tuple) else [value]) if v)
    return RetrieveOutcome(
        status=final.status,
        completed=int(command.get("NumberOfCompletedSuboperations") or 0),
        failed=int(command.get("NumberOfFailedSuboperations") or 0),
        warning=int(command.get("NumberOfWarningSuboperations") or 0),
        failed_sop_instance_uids=failed_uids,
        counts_reported="NumberOfCompletedSuboperations" in command,
    )
