"""The node's DIMSE face for studies of the network: C-FIND, C-MOVE and C-GET from the site's workstations.

A radiologist pulls remote priors from the tools they already use (issue 6, DESIGN §2b): a Study
Root C-FIND with ``PatientID`` = the patient's INS lists the exams the registry knows for that
patient, and a C-MOVE (or C-GET) of one of them retrieves it from its source node (F7) and
C-STOREs every instance to the requesting workstation.

Who may ask, and why it is checked this way:

- **The calling AE** must be one of ``settings.workstations`` *and* connect from that entry's host:
  AE titles are configuration, not authentication, so the address is what actually ties a request
  to the machine an administrator listed. Others get :data:`NOT_AUTHORISED`.
- **The practitioner** is identified by DICOM User Identity Negotiation (PS3.7 D.3.3.7) carrying
  a JWT: type 5 (JSON Web Token in the primary field) or type 2 (username + passcode, the passcode
  being the JWT, for tools that only know that form). The token is verified by the node's
  :class:`~drimbox.trust.tokens.TokenVerifier` on *every* request (a token may expire during a long
  association) and forwarded to source nodes on retrieval. An invalid or expired token, or a SAML
  or Kerberos identity (types 3/4, which the node cannot verify), is refused with :data:`NOT_AUTHORISED`
  rather than silently downgraded: the user asked to be identified and should learn why they were not.
  A type 1 identity (a bare user name) proves nothing and counts as no identity.
- **Without an identity** the node answers only studies already retrieved by an authenticated user
  action (copies under ``[retrieve] work_dir``, ``<work_dir>/<kos_uid>/<series_uid>/<sop>.dcm``):
  it cannot query the registry or a source node on nobody's behalf.

How the INS is read: ``PatientID`` must be a well-formed INS (key checked). The assigning authority
is ``IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID`` when the query gives it (an OID
that is not an INS namespace means the id is not an INS); otherwise each OID of ``ins_oids`` is
tried in turn and the exams found are merged. ``ins_oids`` defaults to the INS-NIR namespace only:
test (``.10``) and demo (``.11``) namespaces are added by configuration, never queried by default
against a production registry. A query without an INS from an identified user is answered from the
retrieved copies, as an anonymous one.

C-MOVE/C-GET of a study the registry knows streams: the retrieval runs in a worker thread and every
instance is C-STOREd as soon as it is on disk (instances already retrieved first), so the workstation
sees pending responses while the source is still sending. The copy stays in ``work_dir`` (the
retrieval is resumable and later anonymous queries find it). Statuses follow PS3.4 C.4.2.1.5:
``0xA801`` for a destination not listed, ``0xB000`` when some sub-operations failed, ``0xA702``
when all did, ``0xFE00`` on C-CANCEL; refusals and upstream failures as :func:`dimse_status_for` says.
Every query and retrieval is audited (``dimse.find``, ``dimse.move``, ``dimse.get``).
"""

from __future__ import annotations

import fnmatch
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pydicom
import structlog
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID
from pynetdicom import build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from drimbox.config import RemoteAE
from drimbox.errors import (
    AuthError,
    DrimboxError,
    InvalidQuery,
    InvalidRequest,
    RegistryUnavailable,
    SourceUnavailable,
    Unauthenticated,
)
from drimbox.hl7.patient import INS_OIDS, is_valid_ins
from drimbox.pacs.contexts import (
    COMPRESSED_SYNTAXES,
    MAX_CONTEXTS,
    NATIVE_SYNTAXES,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    VERIFICATION,
)
from drimbox.pacs.status import DimseStatus
from drimbox.reports import INS_NIR_OID
from drimbox.retrieve.jobs import ExamRetriever
from drimbox.retrieve.model import Actor, Exam, ExamDirectory, PatientTraits, SeriesRef
from drimbox.trust.audit import AuditEvent, AuditTrail, Outcome
from drimbox.trust.tokens import TokenVerifier

__all__ = [
    "DEFAULT_INS_OIDS",
    "INS_ISSUER",
    "NOT_AUTHORISED",
    "DimseFace",
    "RetrievedStudies",
    "RetrievedStudy",
    "default_work_dir",
    "dimse_status_for",
    "face_handlers",
    "handle_find",
    "handle_get",
    "handle_move",
]

log = structlog.get_logger(__name__)

DEFAULT_INS_OIDS: tuple[str, ...] = (INS_NIR_OID,)
"""INS namespaces tried when a query gives no OID: INS-NIR only (test/demo ones are configured)."""

INS_ISSUER = "ASIP-SANTE-INS-NIR"
"""IssuerOfPatientID of an INS in DICOM (DESIGN §3)."""

NOT_AUTHORISED = 0xC124
"""An unlisted caller or an identity that does not verify, with the reason in ErrorComment.

PS3.4 gives Q/R no "not authorised" status, and the general ``0x0124`` is shown as an unknown status
by common SCUs (DCMTK's findscu/movescu): a code of the ``Cxxx`` "Unable to process" range is what
every Q/R SCU reports as a failure, and its low bits echo ``0124`` for whoever reads the logs."""

_PENDING = int(DimseStatus.PENDING)
_CANCEL = int(DimseStatus.CANCEL)
_UNABLE = int(DimseStatus.CANNOT_UNDERSTAND)  # 0xC000, "Unable to process" in the Q/R tables
_SUB_OPS_FAILED = int(DimseStatus.OUT_OF_RESOURCES_SUB_OPERATIONS)  # 0xA702
_SUB_OPS_WARNING = int(DimseStatus.SUB_OPERATIONS_COMPLETE_WITH_FAILURES)  # 0xB000
_LEVELS = ("STUDY", "SERIES", "IMAGE")
_POLL_S = 0.25
"""How often a streaming C-MOVE/C-GET waiting for the source checks for C-CANCEL."""

Yield = tuple[int | Dataset, Dataset | None]


# -- refusals and the one mapping of node errors to DIMSE statuses ------------------------------------


class _Refusal(Exception):
    """A request answered with a failure status (never a crash of the association)."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment

    def status_dataset(self) -> Dataset:
        ds = Dataset()
        ds.Status = self.status
        ds.ErrorComment = self.comment[:64]  # LO
        return ds


def dimse_status_for(exc: DrimboxError) -> int:
    """The failure status a Q/R request gets for a node error (the DIMSE twin of ``http_errors.status_for``).

    Authentication problems are :data:`NOT_AUTHORISED` (``0xC124``); a malformed identifier is
    ``0xA900`` (Identifier does not match SOP Class); an unreachable registry or source is ``0xA700``
    (Refused: Out of Resources — transient, worth retrying later); anything else ``0xC000`` (Unable to
    process), with the reason in ErrorComment.
    """
    match exc:
        case AuthError():
            return NOT_AUTHORISED
        case InvalidQuery() | InvalidRequest():
            return int(DimseStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
        case RegistryUnavailable() | SourceUnavailable():
            return int(DimseStatus.OUT_OF_RESOURCES)
        case _:
            return _UNABLE


# -- retrieved copies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievedStudy:
    """One exam retrieved under ``work_dir`` by an authenticated user action (files as they are on disk)."""

    kos_uid: str
    study_uid: str
    directory: Path
    files: dict[str, Path]
    """SOP Instance UID → file."""
    series: dict[str, tuple[str, ...]]
    """Series Instance UID → its SOP Instance UIDs on disk."""
    study: Dataset
    """Patient and study attributes (header of one instance)."""
    series_headers: dict[str, Dataset]
    """Series attributes (header of one instance of each series)."""
    ins: str | None
    ins_oid: str | None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(h.get("Modality", "")) for h in self.series_headers.values() if
                                   h.get("Modality")))


_HEADER_TAGS = [
    "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "OtherPatientIDsSequence",
    "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyDescription", "StudyID", "InstitutionName", "ReferringPhysicianName",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "BodyPartExamined", "SOPClassUID",
    "SpecificCharacterSet",
]


def _qualifier_oid(item: Dataset) -> str | None:
    qualifiers = item.get("IssuerOfPatientIDQualifiersSequence")
    if qualifiers:
        oid = str(qualifiers[0].get("UniversalEntityID", "")).strip()
        return oid or None
    return None


def _ins_of(header: Dataset) -> tuple[str | None, str | None]:
    """The INS an instance carries: as PatientID (identity rule ``ins``) or in OtherPatientIDsSequence."""
    for item in [header, *header.get("OtherPatientIDsSequence", [])]:
        value = str(item.get("PatientID", "")).strip()
        oid = _qualifier_oid(item)
        if value and is_valid_ins(value) and (oid in INS_OIDS or (oid is None and item.get("IssuerOfPatientID")
                                                                  == INS_ISSUER)):
            return value, oid
    return None, None


class RetrievedStudies:
    """The exams in ``work_dir`` (``<kos_uid>/<series_uid>/<sop>.dcm``), read from their files.

    Headers of one instance per series are read, and kept until the exam directory changes (its series
    directories' mtimes), so repeated queries cost a few ``stat`` calls. Hidden files (``.*.part``: an
    instance being received) are never listed.
    """

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[tuple[str, int], ...], RetrievedStudy | None]] = {}

    def all(self) -> list[RetrievedStudy]:
        """Every retrieved exam with at least one instance on disk."""
        try:
            exam_dirs = sorted(p for p in self.work_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        except FileNotFoundError:
            return []
        studies = [self._study(d) for d in exam_dirs]
        return [s for s in studies if s is not None]

    def by_study(self, study_uid: str) -> list[RetrievedStudy]:
        return [s for s in self.all() if s.study_uid == study_uid]

    def _study(self, exam_dir: Path) -> RetrievedStudy | None:
        try:
            series_dirs = sorted(p for p in exam_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
            signature = tuple((p.name, p.stat().st_mtime_ns) for p in series_dirs)
        except OSError:
            return None
        with self._lock:
            cached = self._cache.get(exam_dir)
        if cached is not None and cached[0] == signature:
            return cached[1]
        study = self._read(exam_dir, series_dirs)
        with self._lock:
            self._cache[exam_dir] = (signature, study)
        return study

    @staticmethod
    def _read(exam_dir: Path, series_dirs: list[Path]) -> RetrievedStudy | None:
        files: dict[str, Path] = {}
        series: dict[str, tuple[str, ...]] = {}
        headers: dict[str, Dataset] = {}
        for series_dir in series_dirs:
            paths = sorted(p for p in series_dir.glob("*.dcm") if not p.name.startswith("."))
            header: Dataset | None = None
            for path in paths:  # the first readable instance speaks for the series
                try:
                    header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
                    break
                except (InvalidDicomError, OSError, ValueError, EOFError):
                    continue
            if header is None:
                continue
            sops = tuple(p.stem for p in paths)
            series[series_dir.name] = sops
            headers[series_dir.name] = header
            files.update({p.stem: p for p in paths})
        if not headers:
            return None
        first = next(iter(headers.values()))
        ins, oid = _ins_of(first)
        return RetrievedStudy(kos_uid=exam_dir.name, study_uid=str(first.get("StudyInstanceUID", "")),
                              directory=exam_dir, files=files, series=series, study=first,
                              series_headers=headers, ins=ins, ins_oid=oid)


# -- matching (PS3.4 C.2.2.2) -----------------------------------------------------------------------------


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [str(value)]
    return [str(v) for v in value]


def _matches(identifier: Dataset, values: dict[str, Any]) -> bool:
    """Whether an answer with ``values`` matches the identifier's matching keys.

    Single value and wild card (``*``, ``?``), UID list, date/time range, and any-of for multi-valued
    attributes (ModalitiesInStudy). Keys the node has no value for are not used for matching
    (universal), as PS3.4 allows for optional keys. PatientName matches case-insensitively, as most
    archives do, since a workstation user types names as they come.
    """
    for element in identifier:
        keyword = element.keyword
        if keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or element.VR == "SQ":
            continue
        if values.get(keyword) is None:
            continue
        wanted = _values(element)
        if not wanted or all(w in ("*", "") for w in wanted):
            continue
        have = values[keyword]
        candidates = [str(v) for v in have] if isinstance(have, list | tuple) else [str(have)]
        if element.VR in ("DA", "TM", "DT") and "-" in wanted[0]:
            low, _, high = wanted[0].partition("-")
            if not any((not low or c >= low) and (not high or c[: len(high)] <= high) for c in candidates if c):
                return False
            continue
        if element.VR == "UI":
            if not set(candidates) & set(wanted):
                return False
            continue
        fold = keyword == "PatientName"
        if not any(fnmatch.fnmatchcase(c.lower() if fold else c, w.lower() if fold else w)
                   for c in candidates for w in wanted):
            return False
    return True


def _answer(identifier: Dataset, level: str, values: dict[str, Any], aet: str) -> Dataset:
    """The response identifier: the requested keys, with the node's values (empty when unknown)."""
    ds = Dataset()
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        if keyword in values and values[keyword] is not None:
            setattr(ds, keyword, values[keyword])
        else:
            ds.add(DataElement(element.tag, element.VR, DicomSequence() if element.VR == "SQ" else None))
    ds.QueryRetrieveLevel = level
    ds.RetrieveAETitle = aet
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names from any site, whatever their accents
    return ds


def _issuer_sequence(oid: str | None) -> DicomSequence:
    if oid is None:
        return DicomSequence()
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return DicomSequence([item])


def _single(identifier: Dataset, keyword: str) -> str | None:
    """A key's value when it names exactly one thing (no wild card, no list)."""
    element = identifier.get(keyword)
    if element is None:
        return None
    wanted = [w.strip() for w in _values(identifier[keyword])]
    if len(wanted) != 1 or not wanted[0] or any(ch in wanted[0] for ch in "*?"):
        return None
    return wanted[0]


def _uids(identifier: Dataset, keyword: str) -> list[str]:
    if keyword not in identifier:
        return []
    return [w.strip() for w in _values(identifier[keyword]) if w.strip() and w.strip() != "*"]


# -- the face -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    aet: str
    address: str
    actor: Actor | None

    @property
    def source(self) -> str:
        return f"{self.aet}@{self.address}"


@dataclass
class _Known:
    """An exam a C-FIND answered to an identified user, kept so that the C-MOVE that follows needs no INS."""

    exam: Exam
    ins: str
    ins_oid: str
    at: float = field(default_factory=time.monotonic)


class _Feed:
    """RetrievalProgress that hands each instance on disk to the streaming C-MOVE/C-GET."""

    def __init__(self, directory: Path, out: queue.Queue[tuple[str, Path] | None]) -> None:
        self._directory = directory
        self._out = out

    def series_started(self, series: SeriesRef) -> None:
        pass

    def instance_received(self, series: SeriesRef, sop_instance_uid: str, size: int) -> None:
        self._out.put((sop_instance_uid, self._directory / series.series_uid / f"{sop_instance_uid}.dcm"))

    def series_finished(self, series: SeriesRef, error: str | None) -> None:
        pass


@dataclass
class _Transfer:
    """What one C-MOVE/C-GET sends: the expected instances, and where their files come from."""

    study_uid: str
    kos_uid: str | None
    patient_ins: str | None
    expected: dict[str, str]
    """SOP Instance UID → SOP Class UID."""
    syntaxes: set[tuple[str, str]] = field(default_factory=set)
    """(SOP class, transfer syntax) pairs known in advance (retrieved copies)."""
    files: dict[str, Path] = field(default_factory=dict)
    """Files already on disk, sent first."""
    live: Future[Any] | None = None
    feed: queue.Queue[tuple[str, Path] | None] | None = None
    error: str | None = None

    def stream(self, cancelled: Callable[[], bool]) -> Iterator[tuple[str, Path]]:
        """Each expected instance's file once, as soon as it is on disk; stops early when ``cancelled()``."""
        sent: set[str] = set()
        for sop, path in self.files.items():
            if sop in self.expected and sop not in sent:
                sent.add(sop)
                yield sop, path
        if self.live is None or self.feed is None:
            return
        while True:
            try:
                item = self.feed.get(timeout=_POLL_S)
            except queue.Empty:
                if cancelled():
                    return
                continue
            if item is None:
                break
            sop, path = item
            if sop in self.expected and sop not in sent:
                sent.add(sop)
                yield sop, path
        try:
            report = self.live.result()
        except DrimboxError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        except Exception as exc:  # noqa: BLE001 - reported to the workstation as failed sub-operations
            log.exception("retrieval for a DIMSE move failed", study=self.study_uid)
            self.error = f"{type(exc).__name__}: {exc}"
            return
        for sop, path in report.received.items():  # anything the progress feed did not report
            if sop in self.expected and sop not in sent:
                sent.add(sop)
                yield sop, path
        if report.errors:
            self.error = "; ".join(report.errors)


class DimseFace:
    """The node's Q/R SCP for studies of the network (see the module docstring).

    Parameters
    ----------
    aet
        The node's AE title (RetrieveAETitle of every answer).
    workstations
        AEs allowed to query and to be C-MOVE destinations (``settings.workstations``).
    audit
        Where ``dimse.find`` / ``dimse.move`` / ``dimse.get`` events go.
    work_dir
        Retrieved copies (``[retrieve] work_dir``, default ``<data_dir>/retrieved``).
    verifier
        Verifies the JWT of a user identity; ``None`` only in the node's dev mode, where a presented
        token is taken unverified (the registry and source nodes still verify it).
    directory, retriever
        The registry (F6) and the retrieval from source nodes (F7); without them only retrieved
        copies are answered.
    ins_oids
        INS namespaces tried when a query gives no OID.
    timezone
        The site's zone: StudyDate/StudyTime are its wall clock (the registry gives UTC).
    check_host
        Require a workstation to connect from its listed host (default).
    exam_ttl_s
        How long an exam found by C-FIND can be moved without the INS in the C-MOVE identifier.
    max_retrievals
        Retrievals from source nodes running at once for DIMSE requests.
    """

    def __init__(self, *, aet: str, workstations: Sequence[RemoteAE], audit: AuditTrail, work_dir: Path,
                 verifier: TokenVerifier | None, directory: ExamDirectory | None = None,
                 retriever: ExamRetriever | None = None, ins_oids: Sequence[str] = DEFAULT_INS_OIDS,
                 timezone: str = "Europe/Paris", check_host: bool = True, exam_ttl_s: float = 3600.0,
                 max_retrievals: int = 2) -> None:
        self.aet = aet
        self.workstations = {w.aet: w for w in workstations}
        self.audit = audit
        self.retrieved = RetrievedStudies(work_dir)
        self.work_dir = work_dir
        self.verifier = verifier
        self.directory = directory
        self.retriever = retriever
        self.ins_oids = tuple(ins_oids)
        self.zone = ZoneInfo(timezone)
        self.check_host = check_host
        self.exam_ttl_s = exam_ttl_s
        self._known: dict[str, _Known] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_retrievals, thread_name_prefix="dimse-retrieve")

    # -- wiring -----------------------------------------------------------------------------------------------

    def contexts(self) -> list[PresentationContext]:
        """The Study Root Q/R models the node's SCP accepts for this face."""
        return [build_context(uid, list(NATIVE_SYNTAXES)) for uid in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)]

    def handlers(self) -> list[tuple[Any, ...]]:
        """This face's event handlers (see :func:`face_handlers`)."""
        return face_handlers(self)

    def close(self) -> None:
        """Stop taking retrievals; those in progress finish (their copies stay resumable)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- who is calling ---------------------------------------------------------------------------------------

    def _caller(self, event: Event) -> _Caller:
        requestor = event.assoc.requestor
        aet = str(requestor.ae_title).strip()
        address = str(requestor.address)
        listed = self.workstations.get(aet)
        if listed is None:
            raise _Refusal(NOT_AUTHORISED, f"calling AE {aet} is not a workstation of this node")
        if self.check_host and address not in _addresses(listed.host):
            raise _Refusal(NOT_AUTHORISED, f"AE {aet} does not call from its listed host")
        return _Caller(aet, address, self._actor(requestor.user_identity))

    def _actor(self, identity: Any) -> Actor | None:
        if identity is None:
            return None
        kind = int(identity.user_identity_type)
        if kind == 1:
            return None  # a bare user name proves nothing
        if kind == 5:
            raw = identity.primary_field
        elif kind == 2:
            raw = identity.secondary_field
        else:
            raise _Refusal(NOT_AUTHORISED, f"user identity type {kind} not supported (use a JWT, type 5)")
        token = bytes(raw or b"").decode("ascii", "replace").strip()
        if not token:
            raise _Refusal(NOT_AUTHORISED, "empty user identity token")
        if self.verifier is None:  # dev mode: the upstream services verify the token
            return Actor(subject="developer", rpps=None, role=None, display_name=None, token=token)
        try:
            principal = self.verifier.verify(token)
        except Unauthenticated as exc:
            raise _Refusal(NOT_AUTHORISED, f"user identity refused: {exc}") from exc
        return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                     display_name=principal.display_name, token=token)

    def _destination(self, aet: str) -> RemoteAE | None:
        return self.workstations.get(aet.strip())

    def _audit(self, action: str, outcome: Outcome, caller: _Caller | None, source: str, **fields: Any) -> None:
        actor = caller.actor if caller else None
        event = AuditEvent(action=action, outcome=outcome, subject=actor.subject if actor else None,
                           rpps=actor.rpps if actor else None, role=actor.role if actor else None,
                           source=source, **fields)
        try:
            self.audit.record(event)
        except Exception:  # noqa: BLE001 - a failed audit write is logged loudly, the answer already went
            log.exception("audit record failed", action=action)

    # -- the registry ----------------------------------------------------------------------------------------

    def _patient_ins(self, identifier: Dataset) -> tuple[str, tuple[str, ...]] | None:
        """The INS a query names and the namespaces to try, or None when PatientID is no INS."""
        ins = _single(identifier, "PatientID")
        if ins is None or not is_valid_ins(ins.upper()):
            return None
        oid = _qualifier_oid(identifier)
        if oid is not None:
            return (ins.upper(), (oid,)) if oid in INS_OIDS else None
        issuer = str(identifier.get("IssuerOfPatientID", "") or "").strip()
        if issuer and issuer != INS_ISSUER and not issuer.startswith("ASIP-SANTE-INS"):
            return None
        return ins.upper(), self.ins_oids

    def _registry_exams(self, actor: Actor, ins: str, oids: Sequence[str]) -> list[_Known]:
        if self.directory is None:
            return []
        found: dict[str, _Known] = {}
        for oid in oids:
            # Only the INS and its OID are known here: the other strict traits are not used by ITI-18.
            traits = PatientTraits(ins=ins, ins_oid=oid, birth_name="", first_given_name="", birth_date=date.min,
                                   sex="U")
            record = self.directory.patient_record(traits, actor)
            for exam in record.exams:
                found.setdefault(exam.kos_uid, _Known(exam, ins, oid))
        known = list(found.values())
        with self._lock:
            now = time.monotonic()
            for uid in [u for u, k in self._known.items() if now - k.at > self.exam_ttl_s]:
                del self._known[uid]
            for item in known:
                self._known[item.exam.study_uid] = item
        return known

    def _exam_for(self, caller: _Caller, study_uid: str, identifier: Dataset) -> _Known | None:
        """The registry exam of a study, for an identified caller: found by an earlier C-FIND, or by INS."""
        if caller.actor is None:
            return None
        with self._lock:
            known = self._known.get(study_uid)
        if known is not None and time.monotonic() - known.at <= self.exam_ttl_s:
            return known
        patient = self._patient_ins(identifier)
        if patient is None:
            return None
        return next((k for k in self._registry_exams(caller.actor, *patient) if k.exam.study_uid == study_uid), None)

    # -- C-FIND -----------------------------------------------------------------------------------------------

    def find(self, event: Event) -> Iterator[Yield]:
        """C-FIND at STUDY, SERIES or IMAGE level (see the module docstring)."""
        caller: _Caller | None = None
        source = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        level = ""
        ins: str | None = None
        try:
            caller = self._caller(event)
            identifier = event.identifier
            level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
            if level not in _LEVELS:
                raise _Refusal(int(DimseStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
                               f"QueryRetrieveLevel {level or '(none)'} is not STUDY, SERIES or IMAGE")
            patient = self._patient_ins(identifier)
            ins = patient[0] if patient else None
            answers = self._find(caller, identifier, level)
        except _Refusal as refused:
            self._audit("dimse.find", "refused", caller, source, patient_ins=ins, detail=refused.comment)
            yield refused.status_dataset(), None
            return
        except DrimboxError as exc:
            failed = _Refusal(dimse_status_for(exc), str(exc))
            self._audit("dimse.find", "failure", caller, source, patient_ins=ins, detail=f"{level}: {exc}"[:2000])
            yield failed.status_dataset(), None
            return
        sent = 0
        for answer in answers:
            if event.is_cancelled:
                self._audit("dimse.find", "success", caller, source, patient_ins=ins,
                            detail=f"{level}: cancelled after {sent} match(es)")
                yield _CANCEL, None
                return
            sent += 1
            yield _PENDING, answer
        studies = sorted({str(a.get("StudyInstanceUID", "")) for a in answers})
        self._audit("dimse.find", "success", caller, source, patient_ins=ins,
                    study_uid=studies[0] if len(studies) == 1 else None,
                    detail=f"{level}: {sent} match(es){'' if caller.actor else ' (retrieved copies only)'}")

    def _find(self, caller: _Caller, identifier: Dataset, level: str) -> list[Dataset]:
        patient = self._patient_ins(identifier)
        if level == "STUDY":
            if caller.actor is not None and patient is not None and self.directory is not None:
                rows = [self._study_values(k) for k in self._registry_exams(caller.actor, *patient)]
            else:
                rows = [self._copy_study_values(s) for s in self.retrieved.all()]
            return [_answer(identifier, level, v, self.aet) for v in rows if _matches(identifier, v)]
        study_uid = _single(identifier, "StudyInstanceUID")
        if study_uid is None:
            raise _Refusal(int(DimseStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
                           f"a {level} query names one StudyInstanceUID")
        series_uid = _single(identifier, "SeriesInstanceUID")
        if level == "IMAGE" and series_uid is None:
            raise _Refusal(int(DimseStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
                           "an IMAGE query names one SeriesInstanceUID")
        copies = self.retrieved.by_study(study_uid)
        known = self._exam_for(caller, study_uid, identifier)
        rows = self._series_rows(known, copies) if level == "SERIES" else self._image_rows(known, copies, series_uid)
        return [_answer(identifier, level, v, self.aet) for v in rows if _matches(identifier, v)]

    # -- values of answers --------------------------------------------------------------------------------------

    def _local(self, when: datetime | None) -> tuple[str | None, str | None]:
        if when is None:
            return None, None
        if when.tzinfo is not None:
            when = when.astimezone(self.zone)
        return when.strftime("%Y%m%d"), when.strftime("%H%M%S")

    def _study_values(self, known: _Known) -> dict[str, Any]:
        exam = known.exam
        day, clock = self._local(exam.performed)
        copies = self.retrieved.by_study(exam.study_uid)
        header = copies[0].study if copies else Dataset()
        modalities = exam.modalities or tuple(dict.fromkeys(s.modality for s in exam.series if s.modality))
        return {
            "PatientID": known.ins, "IssuerOfPatientID": INS_ISSUER,
            "IssuerOfPatientIDQualifiersSequence": _issuer_sequence(known.ins_oid),
            "PatientName": header.get("PatientName"), "PatientBirthDate": header.get("PatientBirthDate"),
            "PatientSex": header.get("PatientSex"),
            "StudyInstanceUID": exam.study_uid, "StudyDate": day, "StudyTime": clock,
            "AccessionNumber": exam.accession_number or "", "StudyDescription": exam.description,
            "ModalitiesInStudy": list(modalities), "NumberOfStudyRelatedSeries": exam.series_count,
            "NumberOfStudyRelatedInstances": exam.instance_count, "InstitutionName": exam.source_site,
            "BodyPartExamined": exam.body_part,
        }

    @staticmethod
    def _copy_study_values(study: RetrievedStudy) -> dict[str, Any]:
        h = study.study
        return {
            "PatientID": study.ins or str(h.get("PatientID", "")),
            "IssuerOfPatientID": INS_ISSUER if study.ins else h.get("IssuerOfPatientID"),
            "IssuerOfPatientIDQualifiersSequence": _issuer_sequence(study.ins_oid),
            "PatientName": h.get("PatientName"), "PatientBirthDate": h.get("PatientBirthDate"),
            "PatientSex": h.get("PatientSex"), "StudyInstanceUID": study.study_uid,
            "StudyDate": h.get("StudyDate"), "StudyTime": h.get("StudyTime"),
            "AccessionNumber": h.get("AccessionNumber"),
            "StudyDescription": h.get("StudyDescription"), "StudyID": h.get("StudyID"),
            "ModalitiesInStudy": list(study.modalities), "NumberOfStudyRelatedSeries": len(study.series),
            "NumberOfStudyRelatedInstances": len(study.files), "InstitutionName": h.get("InstitutionName"),
        }

    @staticmethod
    def _series_rows(known: _Known | None, copies: list[RetrievedStudy]) -> list[dict[str, Any]]:
        headers = {uid: h for c in copies for uid, h in c.series_headers.items()}
        if known is not None:
            exam = known.exam
            rows = []
            for s in exam.series:
                h = headers.get(s.series_uid, Dataset())
                rows.append({"StudyInstanceUID": exam.study_uid, "SeriesInstanceUID": s.series_uid,
                             "Modality": s.modality or h.get("Modality"), "SeriesNumber": h.get("SeriesNumber"),
                             "SeriesDescription": h.get("SeriesDescription"),
                             "BodyPartExamined": h.get("BodyPartExamined"),
                             "NumberOfSeriesRelatedInstances": len(s.instances)})
            return rows
        sops: dict[str, set[str]] = {}
        for c in copies:
            for uid, members in c.series.items():
                sops.setdefault(uid, set()).update(members)
        return [{"StudyInstanceUID": str(h.get("StudyInstanceUID", "")), "SeriesInstanceUID": uid,
                 "Modality": h.get("Modality"), "SeriesNumber": h.get("SeriesNumber"),
                 "SeriesDescription": h.get("SeriesDescription"), "BodyPartExamined": h.get("BodyPartExamined"),
                 "NumberOfSeriesRelatedInstances": len(sops[uid])} for uid, h in headers.items()]

    @staticmethod
    def _image_rows(known: _Known | None, copies: list[RetrievedStudy], series_uid: str | None
                    ) -> list[dict[str, Any]]:
        if known is not None:
            exam = known.exam
            return [{"StudyInstanceUID": exam.study_uid, "SeriesInstanceUID": s.series_uid,
                     "SOPInstanceUID": i.sop_instance_uid, "SOPClassUID": i.sop_class_uid}
                    for s in exam.series if s.series_uid == series_uid for i in s.instances]
        rows: dict[str, dict[str, Any]] = {}
        for c in copies:
            header = c.series_headers.get(series_uid or "")
            for sop in c.series.get(series_uid or "", ()):
                rows[sop] = {"StudyInstanceUID": c.study_uid, "SeriesInstanceUID": series_uid, "SOPInstanceUID": sop,
                             "SOPClassUID": header.get("SOPClassUID") if header is not None else None}
        return list(rows.values())

    # -- C-MOVE / C-GET ---------------------------------------------------------------------------------------

    def move(self, event: Event) -> Iterator[Any]:
        """C-MOVE: the studies (series, instances) named, C-STOREd to a listed workstation."""
        caller: _Caller | None = None
        source = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        request = event.request
        destination_aet = str(getattr(request, "MoveDestination", "") or "").strip()
        try:
            caller = self._caller(event)
        except _Refusal as refused:
            self._audit("dimse.move", "refused", None, source, detail=f"to {destination_aet}: {refused.comment}")
            destination = self._destination(destination_aet)
            if destination is None:
                yield None, None
                return
            yield destination.host, destination.port, {"contexts": [build_context(VERIFICATION)]}
            yield 1
            yield refused.status_dataset(), _failed_list([])
            return
        destination = self._destination(destination_aet)
        if destination is None:
            self._audit("dimse.move", "refused", caller, source, detail=f"move destination {destination_aet} unknown")
            yield None, None  # 0xA801 Move Destination Unknown
            return
        transfer, refusal = self._plan_or_refusal(caller, event.identifier)
        if transfer is None or refusal is not None:
            assert refusal is not None
            self._audit("dimse.move", "refused" if refusal.status == NOT_AUTHORISED else "failure", caller, source,
                        detail=f"to {destination_aet}: {refusal.comment}")
            yield destination.host, destination.port, {"contexts": [build_context(VERIFICATION)]}
            yield 1
            yield refusal.status_dataset(), _failed_list([])
            return
        if not transfer.expected:
            self._audit("dimse.move", "success", caller, source, study_uid=transfer.study_uid,
                        detail=f"to {destination_aet}: nothing to send")
            yield destination.host, destination.port
            yield 0
            return
        yield destination.host, destination.port, {"contexts": _store_contexts(transfer)}
        yield len(transfer.expected)
        yield from self._send(event, transfer, caller, source, "dimse.move", f"to {destination_aet}")

    def get(self, event: Event) -> Iterator[Any]:
        """C-GET: the same instances as C-MOVE, sent back over the requesting association."""
        caller: _Caller | None = None
        source = f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
        try:
            caller = self._caller(event)
        except _Refusal as refused:
            self._audit("dimse.get", "refused", None, source, detail=refused.comment)
            yield 1
            yield refused.status_dataset(), _failed_list([])
            return
        transfer, refusal = self._plan_or_refusal(caller, event.identifier)
        if transfer is None or refusal is not None:
            assert refusal is not None
            self._audit("dimse.get", "refused" if refusal.status == NOT_AUTHORISED else "failure", caller, source,
                        detail=refusal.comment)
            yield 1
            yield refusal.status_dataset(), _failed_list([])
            return
        yield len(transfer.expected)
        yield from self._send(event, transfer, caller, source, "dimse.get", "to the requestor")

    def _plan_or_refusal(self, caller: _Caller, identifier: Dataset) -> tuple[_Transfer | None, _Refusal | None]:
        try:
            return self._plan(caller, identifier), None
        except _Refusal as refused:
            return None, refused
        except DrimboxError as exc:
            return None, _Refusal(dimse_status_for(exc), str(exc))

    def _plan(self, caller: _Caller, identifier: Dataset) -> _Transfer:
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in _LEVELS:
            raise _Refusal(int(DimseStatus.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
                           f"QueryRetrieveLevel {level or '(none)'} is not STUDY, SERIES or IMAGE")
        studies = _uids(identifier, "StudyInstanceUID")
        if len(studies) != 1:
            raise _Refusal(_UNABLE, "a retrieval names one StudyInstanceUID")
        study_uid = studies[0]
        series = set(_uids(identifier, "SeriesInstanceUID")) if level in ("SERIES", "IMAGE") else set()
        sops = set(_uids(identifier, "SOPInstanceUID")) if level == "IMAGE" else set()
        known = self._exam_for(caller, study_uid, identifier)
        copies = self.retrieved.by_study(study_uid)
        if known is not None and self.retriever is not None:
            return self._live(known, caller, series, sops)
        if not copies:
            why = "not retrieved yet: query it with a user identity first" if caller.actor is None else \
                "unknown study: C-FIND it by INS first"
            raise _Refusal(_UNABLE, why)
        transfer = _Transfer(study_uid=study_uid, kos_uid=copies[0].kos_uid, patient_ins=copies[0].ins, expected={})
        for copy in copies:
            for series_uid, members in copy.series.items():
                if series and series_uid not in series:
                    continue
                sop_class = str(copy.series_headers[series_uid].get("SOPClassUID", ""))
                for sop in members:
                    if sops and sop not in sops:
                        continue
                    transfer.expected.setdefault(sop, sop_class)
                    transfer.files.setdefault(sop, copy.files[sop])
        for sop in transfer.files:
            pair = _file_syntax(transfer.files[sop])
            if pair is not None:
                transfer.syntaxes.add(pair)
        return transfer

    def _live(self, known: _Known, caller: _Caller, series: set[str], sops: set[str]) -> _Transfer:
        """A transfer fed by a retrieval from the source nodes (instances already on disk first)."""
        assert self.retriever is not None and caller.actor is not None
        exam = known.exam
        if series:
            exam = replace(exam, series=tuple(s for s in exam.series if s.series_uid in series))
        expected = {i.sop_instance_uid: i.sop_class_uid for s in exam.series for i in s.instances
                    if not sops or i.sop_instance_uid in sops}
        directory = self.work_dir / exam.kos_uid
        files = {sop: path for s in exam.series for i in s.instances if (sop := i.sop_instance_uid) in expected
                 and (path := directory / s.series_uid / f"{sop}.dcm").is_file()}
        transfer = _Transfer(study_uid=exam.study_uid, kos_uid=exam.kos_uid, patient_ins=known.ins,
                             expected=expected, files=files)
        if len(files) < len(expected):
            feed: queue.Queue[tuple[str, Path] | None] = queue.Queue()
            future = self._pool.submit(self.retriever.retrieve, exam, caller.actor, directory,
                                       progress=_Feed(directory, feed))
            future.add_done_callback(lambda _: feed.put(None))
            transfer.live, transfer.feed = future, feed
        return transfer

    def _send(self, event: Event, transfer: _Transfer, caller: _Caller, source: str, action: str, where: str
              ) -> Iterator[Yield]:
        """Pending (status, data set) pairs for each instance, then the final status for what never came."""
        sent: set[str] = set()
        unreadable: list[str] = []
        outcome: Outcome = "failure"
        detail = ""
        try:
            for sop, path in transfer.stream(lambda: bool(event.is_cancelled)):
                if event.is_cancelled:
                    break
                try:
                    dataset = pydicom.dcmread(path)
                except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
                    log.warning("retrieved file unreadable, not sent", path=str(path), error=str(exc))
                    unreadable.append(sop)
                    continue
                sent.add(sop)
                yield _PENDING, dataset
            missing = [sop for sop in transfer.expected if sop not in sent]
            if event.is_cancelled:
                detail = f"{where}: cancelled after {len(sent)} of {len(transfer.expected)}"
                outcome = "success"
                yield _CANCEL, _failed_list(missing)
                return
            if missing:
                why = transfer.error or f"{len(missing)} instance(s) not received from the source"
                status = _SUB_OPS_WARNING if sent else _SUB_OPS_FAILED
                detail = f"{where}: {len(sent)} sent, {len(missing)} failed: {why}"
                yield _Refusal(status, why).status_dataset(), _failed_list(missing)
                return
            outcome = "success"
            detail = f"{where}: {len(sent)} instance(s)"
        finally:
            if not detail:
                detail = f"{where}: interrupted after {len(sent)} of {len(transfer.expected)}"
            self._audit(action, outcome, caller, source, patient_ins=transfer.patient_ins,
                        study_uid=transfer.study_uid, kos_uid=transfer.kos_uid,
                        sop_instance_uids=tuple(sorted(sent)), detail=detail[:2000])


def _failed_list(uids: Sequence[str]) -> Dataset:
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = list(uids)
    return ds


def _file_syntax(path: Path) -> tuple[str, str] | None:
    """(SOP class, transfer syntax) of a DICOM file, from its meta information only."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        return str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError):
        return None


def _store_contexts(transfer: _Transfer) -> list[PresentationContext]:
    """Contexts of the C-STORE sub-association: each SOP class in both native syntaxes, the encapsulated
    syntaxes of the files known in advance, then other lossless-first encapsulated syntaxes while room is
    left (a retrieval in progress does not yet say how its files are encoded). Files travel as stored."""
    classes = list(dict.fromkeys(transfer.expected.values()))
    contexts = [build_context(uid, list(NATIVE_SYNTAXES)) for uid in classes[:MAX_CONTEXTS]]
    pairs = [(c, s) for c, s in sorted(transfer.syntaxes) if UID(s) not in NATIVE_SYNTAXES]
    pairs += [(c, str(s)) for s in COMPRESSED_SYNTAXES for c in classes]
    for sop_class, syntax in dict.fromkeys(pairs):
        if len(contexts) >= MAX_CONTEXTS:
            break
        contexts.append(build_context(sop_class, [syntax]))
    return contexts


def _addresses(host: str) -> set[str]:
    """The addresses a listed host name stands for (itself when it is an address)."""
    try:
        return {host} | {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


# -- pynetdicom handlers: plain functions, wired in one list ---------------------------------------------------


def handle_find(event: Event, face: DimseFace) -> Iterator[Yield]:
    """EVT_C_FIND: Study Root C-FIND for studies of the network (PS3.4 C.4.1)."""
    yield from face.find(event)


def handle_move(event: Event, face: DimseFace) -> Iterator[Any]:
    """EVT_C_MOVE: Study Root C-MOVE to a listed workstation (PS3.4 C.4.2)."""
    yield from face.move(event)


def handle_get(event: Event, face: DimseFace) -> Iterator[Any]:
    """EVT_C_GET: Study Root C-GET over the requesting association (PS3.4 C.4.3)."""
    yield from face.get(event)


def face_handlers(face: DimseFace) -> list[tuple[Any, ...]]:
    """Every event handler of the DIMSE face, in one list (added to the node SCP's own)."""
    return [
        (evt.EVT_C_FIND, handle_find, [face]),
        (evt.EVT_C_MOVE, handle_move, [face]),
        (evt.EVT_C_GET, handle_get, [face]),
    ]


def default_work_dir(data_dir: Path, work_dir: Path | None) -> Path:
    """``[retrieve] work_dir``, default ``<data_dir>/retrieved`` (where jobs and this face keep copies)."""
    return work_dir if work_dir is not None else data_dir / "retrieved"

