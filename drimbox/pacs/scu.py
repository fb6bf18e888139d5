"""The node as an SCU of its site's PACS: C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

One :class:`PacsClient` per peer; it is thread-safe. Queries (and C-MOVE requests) reuse pooled
associations; a C-GET opens its own, proposing storage contexts for the SOP classes it expects; a
C-STORE opens one per batch of exact-match contexts. Retrievals stream: each instance is written to
``dest/<study>/<series>/<sop>.dcm`` as it arrives and yielded while the retrieval goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from pydicom import Dataset

from drimbox.config import DimseSettings, LocalAE, RemoteAE
from drimbox.errors import AssociationAborted, InvalidQuery, StudyNotFound
from drimbox.pacs.channel import InstanceChannel, RetrieveOutcome
from drimbox.pacs.connect import Connector
from drimbox.pacs.contexts import query_contexts, retrieve_plan
from drimbox.pacs.exchange import GET, MOVE, Exchange
from drimbox.pacs.handlers import get_handlers
from drimbox.pacs.mediator import MessageIds, MoveMediator
from drimbox.pacs.models import QueryLevel, RetrievedInstance, StoreReport, StudyInfo
from drimbox.pacs.pool import AssociationPool, Lease
from drimbox.pacs.query import RETURN_KEYS, build_query, retrieve_identifier
from drimbox.pacs.retrieve import RetrieveJob, stream
from drimbox.pacs.selection import RetrieveSelection, select
from drimbox.pacs.sockets import SocketTuner, tune_socket
from drimbox.pacs.store import read_headers, store_files
from drimbox.pacs.walk import instance_info, series_info, study_info

__all__ = ["PacsClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PacsClient:
    """DIMSE client of one PACS.

    Parameters
    ----------
    local:
        The node's AE title (calling AE, and C-MOVE destination) and address (source address).
    remote:
        The PACS; ``remote.timeout_s`` is the DIMSE timeout.
    dimse:
        ACSE/network/connect timeouts, maximum PDU size, pool size.
    mediator:
        Shared with the node's :class:`~drimbox.pacs.scp.NodeScp`; needed by :meth:`move`, and the
        source of node-wide unique Message IDs.
    queue_size:
        Instances buffered between the retrieval and a slow caller (back-pressure beyond).
    fsync:
        Flush each retrieved file to stable storage before yielding it.
    tune:
        Socket options for every connection (default ``TCP_NODELAY``).
    on_association:
        Told the outcome of each association request (see :class:`~drimbox.pacs.connect.Connector`).
    """

    def __init__(
        self,
        local: LocalAE,
        remote: RemoteAE,
        dimse: DimseSettings,
        *,
        mediator: MoveMediator | None = None,
        queue_size: int = 32,
        fsync: bool = True,
        tune: SocketTuner = tune_socket,
        on_association: Callable[[str], None] | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.dimse = dimse
        self.mediator = mediator
        self._queue_size = queue_size
        self._fsync = fsync
        self._connector = Connector(local, remote, dimse, tune=tune, on_association=on_association)
        self._exchange = Exchange(self._connector.peer, remote.timeout_s, local.aet)
        self._message_ids = mediator.message_ids if mediator is not None else MessageIds()
        self._pool = AssociationPool(lambda: self._connector.associate(query_contexts()), dimse.pool_size)
        self._threads = 0
        self._threads_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def peer(self) -> str:
        """``AET@host:port`` of the PACS."""
        return self._connector.peer

    def _pooled(self, operation: Callable[[Lease], T]) -> T:
        """Run ``operation`` on a pooled association; once more on a fresh one if a reused one was dead."""
        with self._pool.lease() as lease:
            try:
                return operation(lease)
            except AssociationAborted:
                if not lease.reused:
                    raise
                log.info("pooled association to %s was stale; retrying on a new one", self.peer)
        with self._pool.lease(fresh=True) as lease:
            return operation(lease)

    def close(self) -> None:
        """Release pooled associations. Retrievals in progress finish on their own associations."""
        self._pool.close()

    def __enter__(self) -> PacsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verification and queries ----------------------------------------------------------------

    def echo(self) -> None:
        """C-ECHO the PACS (PS3.4 Annex A); returns when it answers Success."""
        self._pooled(lambda lease: self._exchange.echo(lease.link, self._message_ids.next()))

    def find(self, level: QueryLevel, query: Dataset | Mapping[str, object]) -> Generator[Dataset, None, None]:
        """C-FIND in the Study Root model; yields each matching identifier as it arrives.

        ``query`` maps DICOM keywords to matching values (``None``/``""`` for return keys); see
        :mod:`drimbox.pacs.query`. Below STUDY level, the query must name the parent UIDs
        (hierarchical model, PS3.4 C.4.1.3.1.1).

        Raises
        ------
        InvalidQuery
            Before anything is sent, for an unknown keyword or a value the key cannot match.
        DimseFailure, PacsError
            When the PACS refuses the query or cannot be reached.
        """
        identifier = build_query(QueryLevel(level), query)
        return self._find(identifier)

    def _find(self, identifier: Dataset) -> Generator[Dataset, None, None]:
        for attempt in (1, 2):
            with self._pool.lease(fresh=attempt == 2) as lease:
                yielded = False
                try:
                    for answer in self._exchange.find(lease.link, identifier, self._message_ids.next()):
                        yielded = True
                        yield answer
                    return
                except AssociationAborted:
                    if yielded or not lease.reused or attempt == 2:
                        raise
                    log.info("pooled association to %s was stale; retrying the C-FIND", self.peer)

    def find_studies(self, **keys: object) -> list[Dataset]:
        """STUDY-level C-FIND by keyword (e.g. ``AccessionNumber="A123"``), with the usual return keys."""
        return list(self.find(QueryLevel.STUDY, {**dict.fromkeys(RETURN_KEYS[QueryLevel.STUDY]), **keys}))

    def walk_study(self, study_uid: str) -> StudyInfo:
        """Walk one study level by level: STUDY, then SERIES, then IMAGE for each series.

        Each IMAGE-level query names exactly one study and one series (PS3.4 C.4.1.3.1.1), which
        even strict SCPs (DCMTK ``dcmqrscp``) accept.

        Raises
        ------
        StudyNotFound
            When the PACS has no such study.
        """
        study_keys = {**dict.fromkeys(RETURN_KEYS[QueryLevel.STUDY]), "StudyInstanceUID": study_uid}
        studies = [s for s in self.find(QueryLevel.STUDY, study_keys) if s.get("StudyInstanceUID") == study_uid]
        if not studies:
            raise StudyNotFound(f"{self.peer} has no study {study_uid}", study_instance_uid=study_uid)
        series_keys = {**dict.fromkeys(RETURN_KEYS[QueryLevel.SERIES]), "StudyInstanceUID": study_uid}
        series = []
        # Read every SERIES answer first: the IMAGE queries then reuse the same pooled association.
        for answer in list(self.find(QueryLevel.SERIES, series_keys)):
            series_uid = answer.get("SeriesInstanceUID")
            if not series_uid:
                continue
            image_keys = {
                **dict.fromkeys(RETURN_KEYS[QueryLevel.IMAGE]),
                "StudyInstanceUID": study_uid,
                "SeriesInstanceUID": str(series_uid),
            }
            instances = [instance_info(i) for i in self.find(QueryLevel.IMAGE, image_keys) if i.get("SOPInstanceUID")]
            series.append(series_info(answer, instances))
        return study_info(studies[0], series)

    # -- retrieval -------------------------------------------------------------------------------

    def get(
        self,
        study_uid: str,
        *,
        series_uid: str | None = None,
        sop_instance_uids: Iterable[str] | None = None,
        dest: Path,
        walk: StudyInfo | None = None,
    ) -> Generator[RetrievedInstance, None, None]:
        """Retrieve a study, a series or some instances with C-GET (PS3.4 C.4.3), streaming.

        The study is walked first (or ``walk`` reused) to learn its SOP classes and instances;
        the C-GET association proposes a storage context for each class (SCP role selected), in
        native and compressed syntaxes, so that the PACS sends files as stored. Each instance is
        written to ``dest/<study>/<series>/<sop>.dcm`` and yielded as soon as it is in place.
        Closing the generator early cancels the retrieval (C-CANCEL).

        Raises
        ------
        RetrieveIncomplete
            After yielding what arrived, when sub-operations failed or expected instances are missing.
        DimseFailure, PacsError
            When the request is refused outright or the PACS cannot be reached.
        """
        selection = self._select(study_uid, series_uid, sop_instance_uids, walk)
        return self._get(selection, Path(dest))

    def move(
        self,
        study_uid: str,
        *,
        series_uid: str | None = None,
        sop_instance_uids: Iterable[str] | None = None,
        dest: Path,
        walk: StudyInfo | None = None,
    ) -> Generator[RetrievedInstance, None, None]:
        """Same as :meth:`get`, by C-MOVE (PS3.4 C.4.2) to the node's own AE title.

        The PACS sends the instances to the node's SCP on associations of its own; the shared
        :class:`~drimbox.pacs.mediator.MoveMediator` hands them to this request by Move Originator
        AE Title and Message ID (or by expected SOP Instance UID). Instances arriving later than
        ``DimseSettings.move_quarantine_s`` after the final response go to quarantine.

        Raises
        ------
        DimseFailure
            E.g. 0xA801 when the PACS does not know the node's AE title as a move destination.
        """
        if self.mediator is None:
            raise RuntimeError("move() needs the MoveMediator shared with the node's SCP (mediator=...)")
        selection = self._select(study_uid, series_uid, sop_instance_uids, walk)
        return self._move(self.mediator, selection, Path(dest))

    def retrieve(
        self,
        study_uid: str,
        *,
        series_uid: str | None = None,
        sop_instance_uids: Iterable[str] | None = None,
        dest: Path,
        walk: StudyInfo | None = None,
    ) -> Generator[RetrievedInstance, None, None]:
        """:meth:`get` when the PACS supports C-GET (``RemoteAE.supports_c_get``), else :meth:`move`."""
        method = self.get if self.remote.supports_c_get else self.move
        return method(study_uid, series_uid=series_uid, sop_instance_uids=sop_instance_uids, dest=dest, walk=walk)

    def _select(
        self, study_uid: str, series_uid: str | None, sop_instance_uids: Iterable[str] | None, walk: StudyInfo | None
    ) -> RetrieveSelection:
        if walk is not None and walk.study_instance_uid != study_uid:
            raise InvalidQuery(f"the walk given is of study {walk.study_instance_uid}, not {study_uid}")
        uids = None if sop_instance_uids is None else list(sop_instance_uids)
        # Validate the UIDs now, before any association is opened.
        retrieve_identifier(study_uid, series_uid, uids if series_uid is not None and uids else ())
        return select(walk or self.walk_study(study_uid), series_uid, uids)

    def _thread(self, name: str, target: Callable[[], None]) -> threading.Thread:
        with self._threads_lock:
            self._threads += 1
            number = self._threads
        return threading.Thread(target=target, name=f"drimbox-{name}-{number}", daemon=True)

    def _get(self, selection: RetrieveSelection, dest: Path) -> Generator[RetrievedInstance, None, None]:
        plan = retrieve_plan(sorted(selection.sop_classes))
        channel = InstanceChannel(self._queue_size)
        job = RetrieveJob(self._exchange, GET, selection.identifiers, channel, self._message_ids.next)
        handlers = get_handlers(dest, channel, fsync=self._fsync)

        def run() -> None:
            outcome: RetrieveOutcome
            try:
                link = self._connector.associate(plan.contexts, ext_neg=plan.roles, evt_handlers=handlers)
                try:
                    outcome = job.run_on(link)
                finally:
                    if link.assoc.is_established:
                        link.assoc.release()
            except BaseException as exc:  # handed over to the consumer, raised there
                outcome = RetrieveOutcome(status=None, error=exc)
            channel.finish(outcome)

        dest.mkdir(parents=True, exist_ok=True)
        yield from stream(job, self._thread("cget", run), expected=selection.expected, grace_s=self._grace_s)

    def _move(
        self, mediator: MoveMediator, selection: RetrieveSelection, dest: Path
    ) -> Generator[RetrievedInstance, None, None]:
        dest.mkdir(parents=True, exist_ok=True)
        with mediator.subscribe(
            originator_aet=self.local.aet, expected=selection.expected, dest=dest, queue_size=self._queue_size
        ) as sub:
            channel = sub.channel
            job = RetrieveJob(
                self._exchange,
                MOVE,
                selection.identifiers,
                channel,
                lambda: mediator.allocate(sub),
                move_destination=self.local.aet,
            )

            def run() -> None:
                try:
                    outcome = self._pooled(lambda lease: job.run_on(lease.link))
                except BaseException as exc:  # handed over to the consumer, raised there
                    channel.finish(RetrieveOutcome(status=None, error=exc))
                    return
                # Sub-operations reported done were acknowledged by the node's SCP, so normally
                # delivered already; stragglers get move_quarantine_s.
                due = outcome.completed + outcome.warning if outcome.counts_reported else len(selection.expected)
                channel.finish(outcome, needed=due, linger_s=mediator.straggler_timeout_s)

            yield from stream(job, self._thread("cmove", run), expected=selection.expected, grace_s=self._grace_s)

    @property
    def _grace_s(self) -> float:
        """How long a cancelled retrieval may take to end before its association is aborted."""
        return min(self.remote.timeout_s, 10.0)

    # -- storage ---------------------------------------------------------------------------------

    def store(self, paths: Iterable[Path]) -> StoreReport:
        """C-STORE DICOM files to the PACS (PS3.4 Annex B), streamed from disk.

        Each file is sent as stored (chunked, never decoded), so each needs an accepted context for
        exactly its SOP class and transfer syntax: the file meta of every file is read first and
        one association per 128 distinct pairs proposes them (see :mod:`drimbox.pacs.store`).

        Returns
        -------
        StoreReport
            What was stored, stored with a warning, or not stored (with the status or reason).

        Raises
        ------
        PacsError
            When an association cannot be opened or breaks (storing is idempotent: send again).
        """
        headers, failures = read_headers(paths)
        return store_files(self._connector, self._exchange, headers, self._message_ids, failures)
