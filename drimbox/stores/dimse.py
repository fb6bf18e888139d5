"""The gateway's backend over DIMSE: any PACS, through the node's :class:`~drimbox.pacs.PacsClient`.

- search: hierarchical C-FINDs (:mod:`drimbox.stores.hierarchy`); closing the iterator cancels
  the C-FIND in progress (C-CANCEL).
- retrieve: the study is walked (STUDY/SERIES/IMAGE C-FINDs) to learn its SOP classes and to answer
  404 before anything is sent, then C-GET (or C-MOVE to the node's SCP when the PACS has no C-GET)
  streams each instance into a spool directory; each one is yielded as soon as it is on disk and
  deleted once the consumer has asked for the next (the caching wrapper has taken it by then).
  For a study or series by C-GET the walk is split: the STUDY and SERIES C-FINDs (cheap) answer
  404 and give the modalities, the C-GET starts at once with the storage contexts of those
  modalities, and the IMAGE-level walk — hundreds of C-FIND answers for a CT, ~0.25 s of
  pynetdicom — runs meanwhile on another association. Its instance list is then the completeness
  check: instances the C-GET did not bring (e.g. of a SOP class the modality's contexts missed)
  are fetched by a second C-GET with the exact classes; any still missing is an error, raised
  after what arrived.
- store: C-STORE of the spooled file as it is (no transcoding), the DIMSE status turned into the
  STOW-RS Failure/Warning Reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

from pydicom import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomweb_gateway import (
    FailureReason,
    InstanceFile,
    NotFound,
    QueryLevel,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
    WarningReason,
)
from drimbox.errors import RetrieveIncomplete, StudyNotFound
from drimbox.pacs import PacsClient, RetrievedInstance, StoreFailure, StoreReport, StudyInfo
from drimbox.pacs import QueryLevel as PacsLevel
from drimbox.pacs.query import RETURN_KEYS
from drimbox.pacs.walk import series_info, study_info
from drimbox.stores.errors import gateway_errors
from drimbox.stores.hierarchy import hierarchical_search
from drimbox.stores.spool import Spool, discard

__all__ = ["DimseStore", "failure_reason", "store_outcome"]

_UNCOMPRESSED = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian})


class DimseStore:
    """A :class:`dicomweb_gateway.DicomStore` over C-FIND, C-GET/C-MOVE and C-STORE.

    Parameters
    ----------
    client
        The PACS client (its ``remote.supports_c_get`` chooses C-GET or C-MOVE; C-MOVE needs the
        client's mediator shared with the node's running SCP). Files it writes are transient:
        build it with ``fsync=False``.
    spool
        Where retrieved instances wait for the consumer.
    retry_after_s
        ``Retry-After`` suggested when the PACS is unavailable (``None``: the gateway's default).
    """

    def __init__(self, client: PacsClient, spool: Spool, *, retry_after_s: int | None = None) -> None:
        self.client = client
        self.spool = spool
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        method = "C-GET" if self.client.remote.supports_c_get else "C-MOVE"
        return f"DimseStore({self.client.peer}, {method})"

    # -- search ------------------------------------------------------------------------------------

    def _find(self, level: QueryLevel, identifier: Dataset) -> Iterator[Dataset]:
        return self.client.find(PacsLevel(level.value), identifier)

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """Hierarchical C-FINDs for ``query`` (PS3.4 C.4.1.3.1.1), answers streamed."""
        with gateway_errors(self.retry_after_s):
            yield from hierarchical_search(self._find, query)

    # -- retrieve ----------------------------------------------------------------------------------

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """C-GET (or C-MOVE) the target into the spool, yielding each instance as it lands."""
        with gateway_errors(self.retry_after_s), self.spool.job() as dest:
            if target.sop_instance_uid is not None or not self.client.remote.supports_c_get:
                walk = self.client.walk_study(target.study_uid)
                _check_exists(walk, target)
                uids = [target.sop_instance_uid] if target.sop_instance_uid is not None else None
                yield from self._receive(target, dest, walk, uids, set())
                return
            outline = self._outline(target.study_uid)
            _check_exists(outline, target, counted=False)
            full: Future[StudyInfo] = Future()
            threading.Thread(target=_run_into, args=(full, self.client.walk_study, target.study_uid),
                             name="dimse-walk", daemon=True).start()  # fmt: skip
            got: set[str] = set()
            try:
                yield from self._receive(target, dest, outline, None, got)
                incomplete: RetrieveIncomplete | None = None
            except RetrieveIncomplete as exc:
                incomplete = exc
            walk = full.result()
            _check_exists(walk, target)
            missing = sorted(_expected(walk, target) - got)
            if missing:
                # Not brought by the first C-GET: ask for exactly those, with their exact classes.
                yield from self._receive(target, dest, walk, missing, got)
            elif incomplete is not None and incomplete.failed:
                raise incomplete

    def _receive(
        self, target: RetrieveTarget, dest: Path, walk: StudyInfo, uids: list[str] | None, got: set[str]
    ) -> Iterator[InstanceFile]:
        received = self.client.retrieve(
            target.study_uid, series_uid=target.series_uid, sop_instance_uids=uids, dest=dest, walk=walk
        )
        try:
            for instance in received:
                got.add(instance.sop_instance_uid)
                try:
                    yield _instance_file(instance)
                finally:
                    # The consumer has moved on: its copy (cache, response) is made.
                    discard(instance.path)
        finally:
            _close(received)

    def _outline(self, study_uid: str) -> StudyInfo:
        """The study and its series, without their instances (two C-FINDs)."""
        study_keys = {**dict.fromkeys(RETURN_KEYS[PacsLevel.STUDY]), "StudyInstanceUID": study_uid}
        studies = [s for s in self.client.find(PacsLevel.STUDY, study_keys) if s.get("StudyInstanceUID") == study_uid]
        if not studies:
            raise StudyNotFound(f"{self.client.peer} has no study {study_uid}", study_instance_uid=study_uid)
        series_keys = {**dict.fromkeys(RETURN_KEYS[PacsLevel.SERIES]), "StudyInstanceUID": study_uid}
        series = [
            series_info(a, ()) for a in self.client.find(PacsLevel.SERIES, series_keys) if a.get("SeriesInstanceUID")
        ]
        return study_info(studies[0], series)

    # -- store -------------------------------------------------------------------------------------

    def store(self, path: Path) -> StoreOutcome:
        """C-STORE the file as it is; the outcome carries the DIMSE status's STOW-RS reason."""
        with gateway_errors(self.retry_after_s):
            report = self.client.store([path])
        return store_outcome(report, path)


def _close(iterator: Iterator[object]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()  # a generator: cancels the retrieval if it is still running


def _run_into(future: Future[StudyInfo], walk: Callable[[str], StudyInfo], study_uid: str) -> None:
    try:
        future.set_result(walk(study_uid))
    except BaseException as exc:  # noqa: BLE001 - raised by the consumer
        future.set_exception(exc)


def _instance_file(instance: RetrievedInstance) -> InstanceFile:
    return InstanceFile(
        path=instance.path,
        study_uid=instance.study_instance_uid,
        series_uid=instance.series_instance_uid,
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        transfer_syntax=instance.transfer_syntax_uid,
        size=instance.size,
    )


def _expected(walk: StudyInfo, target: RetrieveTarget) -> set[str]:
    return {
        i.sop_instance_uid
        for s in walk.series
        if target.series_uid is None or s.series_instance_uid == target.series_uid
        for i in s.instances
    }


def _check_exists(walk: StudyInfo, target: RetrieveTarget, *, counted: bool = True) -> None:
    """404 unless ``walk`` holds the target (``counted=False``: a walk without its instances)."""
    if target.series_uid is None:
        if counted and walk.instance_count == 0:
            raise NotFound(f"study {target.study_uid} has no instance in the PACS")
        return
    series = walk.find_series(target.series_uid)
    if series is None or (counted and not series.instances):
        raise NotFound(f"study {target.study_uid} has no series {target.series_uid} in the PACS")
    if target.sop_instance_uid is not None and all(
        i.sop_instance_uid != target.sop_instance_uid for i in series.instances
    ):
        raise NotFound(f"series {target.series_uid} has no instance {target.sop_instance_uid} in the PACS")


def store_outcome(report: StoreReport, path: Path) -> StoreOutcome:
    """The STOW-RS outcome of one file's C-STORE report (PS3.4 B.2.3, PS3.18 Table 10.5.3-3)."""
    if report.failed:
        failure = report.failed[0]
        return StoreOutcome.failed(failure_reason(failure, path), failure.reason)
    if report.warnings:
        _, code = report.warnings[0]
        known = {int(r): r for r in WarningReason}
        reason = known.get(code, WarningReason.COERCION_OF_DATA_ELEMENTS)
        return StoreOutcome.warning(reason, f"stored with warning status 0x{code:04X}")
    return StoreOutcome.stored()


def failure_reason(failure: StoreFailure, path: Path) -> FailureReason:
    """Failure Reason for a C-STORE that did not store (PS3.4 Table B.2-1 status classes).

    Without a status nothing was sent: the file had no usable File Meta Information, or the PACS
    accepted no presentation context for its (SOP class, transfer syntax) pair — then a compressed
    file most likely failed on its transfer syntax (strict archives accept uncompressed only), an
    uncompressed one on its SOP class.
    """
    status = failure.status
    if status is None:
        if failure.sop_instance_uid is None:
            return FailureReason.CANNOT_UNDERSTAND
        try:
            syntax = read_file_meta_info(path).get("TransferSyntaxUID")
        except (OSError, InvalidDicomError):
            return FailureReason.CANNOT_UNDERSTAND
        if syntax not in _UNCOMPRESSED:
            return FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED
        return FailureReason.SOP_CLASS_NOT_SUPPORTED
    exact = {int(r): r for r in FailureReason}
    if status in exact:
        return exact[status]
    if status & 0xFF00 == 0xA700:
        return FailureReason.OUT_OF_RESOURCES
    if status & 0xFF00 == 0xA900:
        return FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    if status & 0xF000 == 0xC000:
        return FailureReason.CANNOT_UNDERSTAND
    return FailureReason.PROCESSING_FAILURE
