"""F9 backend: remote studies in the site's viewer, streamed from their source nodes through the
node's own ``/dicom-web`` (and cached there).

- :class:`RemoteStudies` — which remote studies the site's users opened (contextual call, DMP
  link, worklist), with the exam (its KOS) and the latest user whose token is still valid: the
  token and the KOS go with every request to the source (DESIGN §2b: the source serves only that
  KOS's instances, only to a professional's token).
- :class:`RemoteNodeStore` — a gateway :class:`DicomStore` over the source nodes, for opened studies
  only. Searches (STUDY, SERIES, IMAGE within the study) are answered from the series metadata the
  source gives (``GET {RetrieveURL}/metadata``, cached); retrieves stream the source's multipart
  answer part by part into the spool, each instance checked to be one the KOS references. Remote
  studies are read-only (store fails).
- :class:`SiteStore` — what the site face serves: an opened remote study from the remote store,
  anything else from the local PACS store. A study-level search without a study UID returns the
  local results, then the opened remote studies of the queried ``PatientID`` (the INS they were
  opened with).

The node wraps :class:`SiteStore` in the gateway's :class:`~dicomweb_gateway.cache.CachingStore`:
OHIF's ``/series/{uid}/metadata`` then pulls the series once from the source and caches it, and the
frames that follow are served from the node's disk. ``search`` always goes to the upstream (the
cache's rule), which here is cheap: metadata is cached in memory.

Not yet: the index is node-wide — any authenticated site user reaches a study another user opened
(the source still checks the opener's token); per-user visibility needs the principal in the store.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import structlog
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from dicomweb_gateway.backend import (
    DicomStore,
    FailureReason,
    InstanceFile,
    QueryLevel,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
)
from dicomweb_gateway.errors import BackendError, BackendUnavailable, MalformedMultipart, NotFound
from dicomweb_gateway.matching import element_values, matches
from dicomweb_gateway.multipart import MultipartParser, PartData, PartEnd, PartStart
from drimbox.errors import UntrustedPeer
from drimbox.retrieve.model import Actor, Exam, SeriesRef
from drimbox.retrieve.transfer import ACCEPT_DICOM, kos_headers
from drimbox.trust.peers import PeerPolicy

__all__ = ["RemoteNodeStore", "RemoteStudies", "SiteStore"]

log = structlog.get_logger(__name__)

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "StudyID",
               "ReferringPhysicianName", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
               "PatientSex", "SpecificCharacterSet", "TimezoneOffsetFromUTC")
_SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime",
                "BodyPartExamined", "Laterality", "PerformedProcedureStepStartDate")


def _token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT (not verified: the source verifies; this only says when to stop using it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = payload.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class _Opened:
    exam: Exam
    actor: Actor
    patient_id: str | None
    expires_at: float
    opened_at: float


class RemoteStudies:
    """The remote studies opened on this node, by Study Instance UID (thread-safe).

    Parameters
    ----------
    default_ttl_s
        How long an opening counts when the token's expiry cannot be read (not a JWT).
    clock
        Seconds since the epoch (tests).
    """

    def __init__(self, *, default_ttl_s: float = 8 * 3600.0, clock: Any = time.time) -> None:
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_study: dict[str, list[_Opened]] = {}

    def open(self, exam: Exam, actor: Actor, *, patient_id: str | None = None,
             expires_at: float | None = None) -> None:
        """Record that ``actor`` opened ``exam``; ``patient_id`` (the INS) makes it found by PatientID."""
        now = self._clock()
        expiry = expires_at if expires_at is not None else _token_expiry(actor.token)
        opened = _Opened(exam, actor, patient_id, expiry if expiry is not None else now + self.default_ttl_s, now)
        with self._lock:
            entries = [o for o in self._by_study.get(exam.study_uid, []) if o.expires_at > now
                       and o.actor.subject != actor.subject]
            entries.append(opened)
            self._by_study[exam.study_uid] = entries

    def _current(self, study_uid: str) -> _Opened | None:
        now = self._clock()
        with self._lock:
            entries = [o for o in self._by_study.get(study_uid, []) if o.expires_at > now]
            if entries:
                self._by_study[study_uid] = entries
            else:
                self._by_study.pop(study_uid, None)
        return max(entries, key=lambda o: o.opened_at) if entries else None

    def get(self, study_uid: str) -> tuple[Exam, Actor] | None:
        """The exam and the latest actor with a valid token for this study, if it is opened."""
        current = self._current(study_uid)
        return (current.exam, current.actor) if current is not None else None

    def patient_id(self, study_uid: str) -> str | None:
        """The PatientID (INS) the study was opened with, if any."""
        current = self._current(study_uid)
        return current.patient_id if current is not None else None

    def for_patient(self, patient_id: str) -> list[str]:
        """Study UIDs opened (and still valid) for this PatientID."""
        with self._lock:
            candidates = [uid for uid, entries in self._by_study.items()
                          if any(o.patient_id == patient_id for o in entries)]
        return [uid for uid in candidates if self._current(uid) is not None]

    def forget(self, study_uid: str) -> None:
        """Drop a study (its KOS was deprecated, its retention passed)."""
        with self._lock:
            self._by_study.pop(study_uid, None)


def _bulk_ignored(*_args: object) -> bytes:
    return b""


class RemoteNodeStore:
    """A :class:`DicomStore` over the source nodes of the opened remote studies (see the module docstring).

    Parameters
    ----------
    studies
        The opened remote studies.
    client
        HTTPS client with the node's certificate (:func:`drimbox.trust.peers.network_client`).
    policy
        The trust list; a RetrieveURL elsewhere is not contacted (502).
    spool_dir
        Where instances wait between the source and the client (the cache hard-links them: keep it
        on the cache's file system).
    metadata_entries
        Series whose metadata is kept in memory (LRU).
    """

    def __init__(self, studies: RemoteStudies, client: httpx.Client, policy: PeerPolicy, spool_dir: Path, *,
                 metadata_entries: int = 256, retry_after_s: int = 5) -> None:
        self.studies = studies
        self.client = client
        self.policy = policy
        self.spool_dir = spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.retry_after_s = retry_after_s
        self._metadata_entries = metadata_entries
        self._lock = threading.Lock()
        self._metadata: OrderedDict[tuple[str, str], list[Dataset]] = OrderedDict()

    # -- search -----------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """STUDY / SERIES / IMAGE matches within an opened remote study (nothing otherwise)."""
        study_uid = _study_of(query)
        opened = self.studies.get(study_uid) if study_uid else None
        if opened is None:
            return iter(())
        exam, actor = opened
        return self._search(query, exam, actor)

    def _search(self, query: SearchQuery, exam: Exam, actor: Actor) -> Iterator[Dataset]:
        series_refs = [s for s in exam.series if query.series_uid in (None, s.series_uid)]
        if query.level is QueryLevel.STUDY:
            study = self._study_dataset(exam, actor)
            if study is not None and matches(query.matching, study, fuzzy=query.fuzzy):
                yield study
            return
        for ref in series_refs:
            instances = self.series_metadata(exam, actor, ref)
            if not instances:
                continue
            if query.level is QueryLevel.SERIES:
                ds = _series_dataset(instances)
                if matches(query.matching, ds, fuzzy=query.fuzzy):
                    yield ds
            else:
                for ds in instances:
                    if matches(query.matching, ds, fuzzy=query.fuzzy):
                        yield ds

    def _study_dataset(self, exam: Exam, actor: Actor) -> Dataset | None:
        per_series = [self.series_metadata(exam, actor, ref) for ref in exam.series]
        instances = [ds for series in per_series for ds in series]
        if not instances:
            return None
        study = Dataset()
        for key in _STUDY_KEYS:
            if key in instances[0]:
                study[key] = instances[0][key]
        study.ModalitiesInStudy = sorted({str(ds.Modality) for ds in instances if "Modality" in ds})
        study.NumberOfStudyRelatedSeries = sum(1 for s in per_series if s)
        study.NumberOfStudyRelatedInstances = len(instances)
        return study

    def series_metadata(self, exam: Exam, actor: Actor, series: SeriesRef) -> list[Dataset]:
        """The series' instances as the source describes them (DICOM JSON, cached), KOS members only."""
        key = (exam.kos_uid, series.series_uid)
        with self._lock:
            hit = self._metadata.get(key)
            if hit is not None:
                self._metadata.move_to_end(key)
                return hit
        self._check_url(series.retrieve_url)
        url = f"{series.retrieve_url}/metadata"
        try:
            response = self.client.get(url, headers=kos_headers(exam, actor, "application/dicom+json"))
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"source node unreachable: {exc}", self.retry_after_s) from exc
        _check(response, url, self.retry_after_s)
        wanted = {i.sop_instance_uid for i in series.instances}
        datasets = []
        for item in response.json():
            ds = Dataset.from_json(item, bulk_data_uri_handler=_bulk_ignored)
            in_kos = str(ds.get("SOPInstanceUID", "")) in wanted
            if in_kos and str(ds.get("SeriesInstanceUID", "")) == series.series_uid:
                datasets.append(ds)
        datasets.sort(key=lambda ds: int(ds.get("InstanceNumber") or 0))
        with self._lock:
            self._metadata[key] = datasets
            while len(self._metadata) > self._metadata_entries:
                self._metadata.popitem(last=False)
        return datasets

    # -- retrieve ---------------------------------------------------------------------------

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """Stream the target's instances from the source node (404 when not an opened remote study)."""
        opened = self.studies.get(target.study_uid)
        if opened is None:
            raise NotFound(f"study {target.study_uid} is not an opened remote study")
        exam, actor = opened
        refs = [s for s in exam.series if target.series_uid in (None, s.series_uid)]
        if not refs:
            raise NotFound(f"series {target.series_uid} is not in the exam's KOS")
        if target.sop_instance_uid is not None:
            if not any(i.sop_instance_uid == target.sop_instance_uid for i in refs[0].instances):
                raise NotFound(f"instance {target.sop_instance_uid} is not in the exam's KOS")
            urls = [(refs[0], f"{refs[0].retrieve_url}/instances/{target.sop_instance_uid}")]
        else:
            urls = [(ref, ref.retrieve_url) for ref in refs]
        for _, url in urls:
            self._check_url(url)
        return self._stream(exam, actor, urls)

    def _stream(self, exam: Exam, actor: Actor, urls: list[tuple[SeriesRef, str]]) -> Iterator[InstanceFile]:
        work = Path(tempfile.mkdtemp(prefix="remote-", dir=self.spool_dir))
        try:
            for ref, url in urls:
                members = {i.sop_instance_uid for i in ref.instances}
                try:
                    with self.client.stream("GET", url, headers=kos_headers(exam, actor, ACCEPT_DICOM)) as response:
                        if response.status_code != 200:
                            response.read()
                        _check(response, url, self.retry_after_s)
                        for path in _parts(response, work):
                            instance = _instance_file(path)
                            if instance is None or instance.sop_instance_uid not in members \
                                    or instance.series_uid != ref.series_uid or instance.study_uid != exam.study_uid:
                                log.warning("remote instance outside the KOS dropped", url=url,
                                            sop=instance.sop_instance_uid if instance else None)
                                path.unlink(missing_ok=True)
                                continue
                            try:
                                yield instance
                            finally:
                                path.unlink(missing_ok=True)
                except (httpx.TransportError, MalformedMultipart) as exc:
                    raise BackendUnavailable(f"source node transfer failed: {exc}", self.retry_after_s) from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def store(self, path: Path) -> StoreOutcome:
        """Remote studies are read-only."""
        return StoreOutcome.failed(FailureReason.PROCESSING_FAILURE, "remote studies are read-only")

    def _check_url(self, url: str) -> None:
        try:
            self.policy.check_url(url)
        except UntrustedPeer as exc:
            raise BackendError(str(exc)) from exc


def _check(response: httpx.Response, url: str, retry_after_s: int) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        raise NotFound(f"{url}: not found on the source node")
    if status >= 500 or status == 429:  # 429/503: the source's per-peer caps, passed on as "try again"
        given = response.headers.get("retry-after", "")
        raise BackendUnavailable(f"{url}: source node answered {status}",
                                 int(given) if given.isdigit() else retry_after_s)
    raise BackendError(f"{url}: source node refused ({status}): {response.text[:200]}")


def _parts(response: httpx.Response, directory: Path) -> Iterator[Path]:
    """Each body part of a multipart/related response, written to a file as it arrives."""
    content_type = response.headers.get("content-type", "")
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise BackendError(f"source node answered {content_type!r}, not multipart/related")
    parser = MultipartParser(match.group(1))
    handle = None
    path: Path | None = None
    try:
        for chunk in response.iter_bytes():
            for event in parser.feed(chunk):
                if isinstance(event, PartStart):
                    fd, name = tempfile.mkstemp(suffix=".dcm", dir=directory)
                    path = Path(name)
                    handle = open(fd, "wb")  # noqa: SIM115 - closed at PartEnd or in finally
                elif isinstance(event, PartData):
                    assert handle is not None
                    handle.write(event.data)
                elif isinstance(event, PartEnd):
                    assert handle is not None and path is not None
                    handle.close()
                    done, handle, path = path, None, None
                    yield done
        parser.close()
    finally:
        if handle is not None:
            handle.close()
        if path is not None:
            path.unlink(missing_ok=True)


def _instance_file(path: Path) -> InstanceFile | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if ds.file_meta else ""
    return InstanceFile(path=path, study_uid=str(ds.get("StudyInstanceUID", "")),
                        series_uid=str(ds.get("SeriesInstanceUID", "")),
                        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
                        sop_class_uid=str(ds.get("SOPClassUID", "")),
                        transfer_syntax=syntax, size=path.stat().st_size)


def _series_dataset(instances: list[Dataset]) -> Dataset:
    first = instances[0]
    ds = Dataset()
    for key in (*_STUDY_KEYS, *_SERIES_KEYS):
        if key in first:
            ds[key] = first[key]
    ds.NumberOfSeriesRelatedInstances = len(instances)
    return ds


def _element(ds: Dataset, keyword: str) -> DataElement | None:
    tag = Tag(keyword)
    return ds[tag] if tag in ds else None


def _study_of(query: SearchQuery) -> str | None:
    """The one study a query is about (path or a single-valued StudyInstanceUID key), if any."""
    if query.study_uid:
        return query.study_uid
    values = element_values(_element(query.matching, "StudyInstanceUID"))
    return values[0] if len(values) == 1 else None


class SiteStore:
    """The site face's store: opened remote studies from ``remote``, everything else from ``local``."""

    def __init__(self, local: DicomStore, remote: RemoteNodeStore, studies: RemoteStudies) -> None:
        self.local = local
        self.remote = remote
        self.studies = studies

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """See the module docstring (remote study → remote; study-level by PatientID → local + remote)."""
        study_uid = _study_of(query)
        if study_uid is not None and self.studies.get(study_uid) is not None:
            return self.remote.search(query)
        if query.level is QueryLevel.STUDY and study_uid is None:
            return self._local_then_remote(query)
        return self.local.search(query)

    def _local_then_remote(self, query: SearchQuery) -> Iterator[Dataset]:
        local = self.local.search(query)
        seen: set[str] = set()
        try:
            for ds in local:
                seen.add(str(ds.get("StudyInstanceUID", "")))
                yield ds
        finally:
            with contextlib.suppress(Exception):
                close = getattr(local, "close", None)
                if close is not None:
                    close()
        wanted = element_values(_element(query.matching, "PatientID"))
        if len(wanted) != 1:
            return
        patient_id = wanted[0]
        others = Dataset()
        for elem in query.matching:
            if elem.keyword != "PatientID":
                others.add(elem)
        for uid in self.studies.for_patient(patient_id):
            if uid in seen:
                continue
            for ds in self.remote.search(SearchQuery(level=QueryLevel.STUDY, matching=others, study_uid=uid,
                                                     return_keys=query.return_keys, fuzzy=query.fuzzy)):
                ds.PatientID = patient_id  # the INS it was opened with (the source's PACS may use its IPP)
                yield ds

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        if self.studies.get(target.study_uid) is not None:
            return self.remote.retrieve(target)
        return self.local.retrieve(target)

    def store(self, path: Path) -> StoreOutcome:
        """Into the local PACS (a remote study's UIDs included: importing is the importer's job)."""
        return self.local.store(path)
