"""Run C-GET/C-MOVE requests in a worker thread and stream what arrives to the caller.

The worker issues the request(s) and reads the responses; the instances reach the caller through
an :class:`~drimbox.pacs.channel.InstanceChannel` as they are filed, while the retrieval is still
running. When the caller stops early (closes the generator), the worker is cancelled with C-CANCEL
(PS3.7 9.3.2.3, 9.3.3.3), given a grace period, then the association is aborted: no thread or
association outlives the generator by more than the DIMSE timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

from pydicom import Dataset

from drimbox.errors import RetrieveIncomplete
from drimbox.pacs.channel import InstanceChannel, RetrieveOutcome
from drimbox.pacs.exchange import Exchange, RetrieveModel
from drimbox.pacs.models import RetrievedInstance
from drimbox.pacs.responses import Link
from drimbox.pacs.status import DimseStatus, describe

__all__ = ["RetrieveJob", "merge_outcomes", "stream"]

log = logging.getLogger(__name__)


def merge_outcomes(outcomes: Sequence[RetrieveOutcome]) -> RetrieveOutcome:
    """One outcome for several requests of one retrieval: counts added, the worst status kept."""
    if not outcomes:
        return RetrieveOutcome(status=int(DimseStatus.SUCCESS), counts_reported=True)
    worst = next((o.status for o in outcomes if o.status not in (None, DimseStatus.SUCCESS)), outcomes[-1].status)
    return RetrieveOutcome(
        status=worst,
        completed=sum(o.completed for o in outcomes),
        failed=sum(o.failed for o in outcomes),
        warning=sum(o.warning for o in outcomes),
        failed_sop_instance_uids=tuple(u for o in outcomes for u in o.failed_sop_instance_uids),
        counts_reported=all(o.counts_reported for o in outcomes),
    )


@dataclass
class RetrieveJob:
    """The requests of one retrieval and the state needed to cancel them from another thread."""

    exchange: Exchange
    model: RetrieveModel
    identifiers: Sequence[Dataset]
    channel: InstanceChannel
    next_message_id: Callable[[], int]
    move_destination: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _current: tuple[Link, int] | None = None
    _cancelled: bool = False

    def run_on(self, link: Link) -> RetrieveOutcome:
        """Issue every request on ``link`` in turn; stop early when cancelled."""
        outcomes: list[RetrieveOutcome] = []
        for identifier in self.identifiers:
            msg_id = self.next_message_id()
            with self._lock:
                if self._cancelled:
                    break
                self._current = (link, msg_id)
            try:
                outcomes.append(
                    self.exchange.retrieve(link, self.model, identifier, msg_id, move_destination=self.move_destination)
                )
            finally:
                with self._lock:
                    self._current = None
        return merge_outcomes(outcomes)

    def cancel(self) -> None:
        """Send C-CANCEL for the request in progress and issue no further request."""
        with self._lock:
            self._cancelled = True
            current = self._current
        if current is None:
            return
        link, msg_id = current
        assoc = link.assoc
        if assoc.is_established:
            log.info("cancelling %s message %d to %s", self.model.name, msg_id, self.exchange.peer)
            assoc.send_c_cancel(msg_id, query_model=self.model.sop_class)

    def abort(self) -> None:
        """Abort the association of the request in progress."""
        with self._lock:
            current = self._current
        if current is not None:
            current[0].assoc.abort()


def stream(
    job: RetrieveJob,
    worker: threading.Thread,
    *,
    expected: frozenset[str],
    grace_s: float,
) -> Generator[RetrievedInstance, None, None]:
    """Yield instances as they arrive; then check the outcome against ``expected``.

    Raises
    ------
    DimseFailure
        When the request failed before any sub-operation (e.g. move destination unknown).
    PacsTimeout, AssociationAborted, ...
        What the worker raised.
    RetrieveIncomplete
        After yielding what arrived, when sub-operations failed or expected instances are missing.
    """
    channel = job.channel
    received: set[str] = set()
    drained = False
    worker.start()
    try:
        while (instance := channel.get()) is not None:
            received.add(instance.sop_instance_uid)
            yield instance
        drained = True
    finally:
        if not drained:
            channel.close()
            if worker.is_alive():
                job.cancel()
                worker.join(grace_s)
            if worker.is_alive():
                log.warning("%s to %s did not stop after C-CANCEL; aborting", job.model.name, job.exchange.peer)
                job.abort()
                worker.join(job.exchange.dimse_timeout_s + 1.0)
        worker.join(grace_s)
    outcome = channel.outcome
    assert outcome is not None  # the worker always finishes the channel
    if outcome.error is not None:
        raise outcome.error
    job.exchange.check_retrieve(job.model, outcome, received=len(received))
    missing = tuple(sorted(expected - received))
    if outcome.failed or missing:
        raise RetrieveIncomplete(
            f"{job.model.name} from {job.exchange.peer} incomplete: {len(received)} instance(s) received, "
            f"{outcome.failed} sub-operation(s) failed, {len(missing)} expected instance(s) missing "
            f"(final status {describe(outcome.status or 0, job.model.service)})",
            failed=outcome.failed,
            missing=missing,
        )
