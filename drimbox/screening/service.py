"""The screening second read, end to end, as one node sees it (programme, reader's node, L1 site).

**Programme (CRCDC).** :meth:`ScreeningService.create_request` checks the L1 reading (ACR 1-2), finds the
exam in the registry by the woman's INS (ITI-18/43, as the consumer side does), reads its instance
headers from the source node (WADO-RS metadata, within its KOS) and checks that it is a screening
mammography; :meth:`assign` gives it to a reader — named, or the next one round-robin — never to its
L1 reader, and sends the assignment to the reader's node.

**Reader's node.** :meth:`receive_assignment` records the case on the reader's worklist and prefetches,
in the background, the exam and the woman's prior screening mammographies (found in the registry by
INS) from their source nodes into the node cache (through the site face's store, so the viewer reads
them from disk); the case becomes ``prefetched``. :meth:`open_case` opens the exams for the reader
(their own token from then on) and gives the viewer URL; :meth:`record_reading` builds the result SR
(:mod:`drimbox.screening.sr`) and returns it to the programme and the L1 site.

**L1 site and programme.** :meth:`receive_result` reads the SR, records the result (turnaround,
discordance) and audits it. Nothing goes to the DMP: it has no document type for a second read.

**Credentials.** Node-to-node messages (assignment, status, result) go with the sending node's own
token (client credentials, :mod:`drimbox.trust.node_credential`), bound on arrival to the presenting node:
a reader's node takes assignments only from its programme's node, the programme takes a case's status and
result only from the node it assigned the case to. No user is present when the reader's node prefetches:
it acts with its own token, which the source admits for one KOS under a **KOS grant**
(:mod:`drimbox.trust.grants`). The programme issues those grants in-process for the exam and the priors
it publishes itself (the demo's site A); for an exam another node publishes it asks that source
(``POST /screening/grants``, which a source takes only from its own programme's node). A source that
cannot or will not grant leaves the exam to be fetched when the reader opens the case, with their token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from urllib.parse import urlsplit

import pydicom
import structlog
from pydicom import Dataset

from dicomweb_gateway import CachingStore, GatewayError
from dicomweb_gateway.part10 import READ_ERRORS, length_problem
from drimbox.config import NodeSettings, ScreeningReader
from drimbox.errors import DrimboxError, Forbidden, InvalidRequest, NetworkError
from drimbox.retrieve.model import Actor, Exam, ExamDirectory, PatientTraits
from drimbox.retrieve.viewing import RemoteNodeStore, RemoteStudies
from drimbox.screening.errors import AssignmentRefused, NotScreeningExam, ScreeningRefused
from drimbox.screening.messages import NodeMessenger
from drimbox.screening.model import (
    Assignment,
    CaseStatus,
    ExamRef,
    L2ReadingIn,
    PatientRef,
    Reading,
    ScreeningRequestIn,
    is_discordant,
)
from drimbox.screening.sr import build_result_sr, read_result_sr
from drimbox.screening.store import CaseRow, RequestRow, ResultRow, ScreeningStore
from drimbox.screening.validation import check_eligible, check_screening_exam, image_facts
from drimbox.stores.prefetch import prefetch_study
from drimbox.trust.audit import AuditEvent, AuditTrail
from drimbox.trust.grants import KosGrants
from drimbox.trust.node_credential import NodeCredential, network_base_url
from drimbox.trust.principal import Principal

__all__ = ["SCREENING_PROTOCOL", "ScreeningService", "case_viewer_url", "traits_of"]

log = structlog.get_logger(__name__)

SCREENING_PROTOCOL = "@drimbox/hpMammoPrior"
"""The viewer's hanging protocol of a case with a prior (``drimbox.viewer.config_js``): the four views of
the current exam above the same four of the prior."""
_MAMMO_PROTOCOL = "@ohif/hpMammo"
_GRANT_S = 7 * 86400.0
"""A second read is due within days: its grants last the longest a grant may (a week)."""


def traits_of(patient: PatientRef) -> PatientTraits:
    """The INS traits the registry look-up takes."""
    return PatientTraits(ins=patient.ins, ins_oid=patient.ins_oid, birth_name=patient.family_name,
                         first_given_name=patient.given_name, birth_date=patient.birth_date, sex=patient.sex)


def case_viewer_url(current: str, priors: list[str]) -> str:
    """The viewer on the current exam (first) and its prior; the layout that shows both when there is one."""
    studies = ",".join([current, *priors[:1]])
    protocol = SCREENING_PROTOCOL if priors else _MAMMO_PROTOCOL
    return f"/viewer?StudyInstanceUIDs={studies}&hangingProtocolId={protocol}"


def _ins_of(ds: Dataset) -> str:
    """The INS of an SR's patient: in OtherPatientIDsSequence (as in the images), else its PatientID."""
    for item in ds.get("OtherPatientIDsSequence", []) or []:
        if str(item.get("IssuerOfPatientID", "")).startswith("ASIP-SANTE-INS"):
            return str(item.PatientID)
    return str(ds.get("PatientID", ""))


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _actor(principal: Principal, token: str) -> Actor:
    return Actor(subject=principal.subject, rpps=principal.rpps, role=principal.role,
                 display_name=principal.display_name, token=token)


@dataclass(frozen=True, slots=True)
class NodeParts:
    """What the service uses of its node (all optional but the store: a node plays the roles it can)."""

    directory: ExamDirectory | None
    remote_store: RemoteNodeStore | None
    remote_studies: RemoteStudies | None
    site_store: CachingStore | None
    messenger: NodeMessenger | None
    audit: AuditTrail
    grants: KosGrants | None = None
    """This node's KOS grants (as a source): the programme grants the reader's node what it publishes."""
    node_credential: NodeCredential | None = None
    """This node's own token: node-to-node messages, and the prefetch without a user."""
    published: Callable[[str], str | None] | None = None
    """As an L1 site: the studies of a KOS this node publishes (current), comma-separated; ``None`` if not."""


class ScreeningService:
    """The workflow of one node (see the module docstring)."""

    def __init__(self, settings: NodeSettings, store: ScreeningStore, parts: NodeParts, *,
                 background: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.settings = settings
        self.config = settings.screening
        self.store = store
        self.parts = parts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="screening-prefetch")
        self._background = background or self._submit
        self._lock = threading.Lock()

    def _submit(self, job: Callable[[], None]) -> None:
        self._pool.submit(job)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    @property
    def own_url(self) -> str:
        """This node's network face, as peers reach it."""
        http = self.settings.http
        return (http.public_network_url or f"https://{http.network_host}:{http.network_port}").rstrip("/")

    @property
    def programme_url(self) -> str:
        if self.config.programme_url:
            return self.config.programme_url.rstrip("/")
        if self.config.programme:
            return self.own_url
        raise ScreeningRefused("this node is not the programme's and has no screening.programme_url")

    def _audit(self, principal: Principal | None, action: str, outcome: str, **fields: object) -> None:
        self.parts.audit.record(AuditEvent.by(principal, action, outcome, **fields))  # type: ignore[arg-type]

    def _node_token(self) -> str:
        if self.parts.node_credential is None:
            raise ScreeningRefused("this node has no credential of its own ([oidc] client): it cannot send "
                                   "screening messages to other nodes")
        return self.parts.node_credential.token()

    @staticmethod
    def _from_node(principal: Principal, url: str, what: str) -> None:
        """Refuse unless ``principal`` is the node at ``url`` presenting its own token (dev mode excepted)."""
        if principal.kind == "developer":
            return
        if principal.kind != "node" or (principal.node or "").lower() != _host(url):
            raise Forbidden(f"{what} comes only from the node at {url}, with its own credential")

    def _require_programme(self) -> None:
        if not self.config.programme:
            raise Forbidden("this node does not play the screening programme's role (screening.programme)")

    # -- programme: requests ------------------------------------------------------------------------------

    def find_exam(self, patient: PatientRef, study_uid: str, kos_uid: str | None, actor: Actor) -> Exam:
        """The published exam (its KOS) in the registry, by INS."""
        if self.parts.directory is None:
            raise ScreeningRefused("this node has no registry (registry.base_url): it cannot find the exam")
        record = self.parts.directory.patient_record(traits_of(patient), actor)
        exam = record.exam(kos_uid) if kos_uid else record.by_study(study_uid)
        if exam is None or exam.study_uid != study_uid:
            raise ScreeningRefused(f"no published exam {study_uid} for INS {patient.ins} in the registry "
                                   "(it must be published, with its KOS, before a second read is requested)")
        return exam

    def exam_headers(self, exam: Exam, actor: Actor) -> list[Dataset]:
        """Every instance header of the exam, from its source node (WADO-RS metadata, within its KOS)."""
        if self.parts.remote_store is None:
            raise ScreeningRefused("this node cannot reach other nodes (no tls.cert_file)")
        try:
            return [ds for ref in exam.series for ds in self.parts.remote_store.series_metadata(exam, actor, ref)]
        except GatewayError as exc:
            raise NetworkError(f"the exam's source node did not describe its images: {exc}") from exc

    def create_request(self, request: ScreeningRequestIn, principal: Principal, token: str) -> RequestRow:
        """Validate and record a second-read request (module docstring); refusals are audited."""
        self._require_programme()
        actor = _actor(principal, token)
        fields = {"patient_ins": request.patient.ins, "study_uid": request.study_uid}
        try:
            check_eligible(request.l1)
            exam = self.find_exam(request.patient, request.study_uid, request.kos_uid, actor)
            if "MG" not in exam.modalities and exam.modalities:
                raise NotScreeningExam("not a screening mammography", problems=(
                    f"the exam's modalities are {', '.join(exam.modalities)}, not MG",))
            check_screening_exam((image_facts(ds) for ds in self.exam_headers(exam, actor)),
                                 single_breast=request.single_breast)
        except InvalidRequest as exc:
            self._audit(principal, "screening.request", "refused", **fields, detail="; ".join(exc.problems))
            raise
        row = self.store.add_request(
            study_uid=request.study_uid, kos_uid=exam.kos_uid, patient=request.patient.model_dump(mode="json"),
            l1=request.l1.model_dump(mode="json"), single_breast=request.single_breast, priority=request.priority,
            l1_site_url=(request.l1_site_url or self.own_url).rstrip("/"))
        self._audit(principal, "screening.request", "success", **fields, kos_uid=exam.kos_uid, detail=row.id)
        return row

    def request(self, request_id: str) -> RequestRow:
        row = self.store.request(request_id)
        if row is None:
            raise ScreeningRefused(f"no second-read request {request_id}")
        return row

    # -- programme: assignment ----------------------------------------------------------------------------

    def _reader(self, rpps: str) -> ScreeningReader | None:
        return next((r for r in self.config.readers if r.rpps == rpps), None)

    def _next_reader(self, l1_rpps: str) -> ScreeningReader:
        """Round-robin: the reader after the one assigned last, skipping the exam's L1 reader."""
        readers = [r for r in self.config.readers if r.rpps != l1_rpps]
        if not readers:
            raise AssignmentRefused("no second reader available: the programme's only reader is this exam's "
                                    "L1 reader")
        assigned = [r for r in self.store.requests() if r.assigned_at is not None and r.reader_rpps]
        if not assigned:
            return readers[0]
        last = max(assigned, key=lambda r: r.assigned_at or datetime.min.replace(tzinfo=UTC)).reader_rpps
        order = [r.rpps for r in self.config.readers]
        start = order.index(last) + 1 if last in order else 0
        for step in range(len(order)):
            candidate = self._reader(order[(start + step) % len(order)])
            if candidate is not None and candidate.rpps != l1_rpps:
                return candidate
        return readers[0]

    def assign(self, request_id: str, reader_rpps: str | None, principal: Principal, token: str) -> RequestRow:
        """Give the case to ``reader_rpps`` (``None``: round-robin) and send it to the reader's node."""
        self._require_programme()
        with self._lock:
            row = self.request(request_id)
            l1 = Reading.model_validate(row.l1)
            try:
                if row.status == CaseStatus.DONE:
                    raise AssignmentRefused(f"request {request_id} is done: its result is recorded")
                if reader_rpps == l1.reader_rpps:
                    raise AssignmentRefused(
                        f"RPPS {reader_rpps} is the L1 reader of this exam: the second read must be by another "
                        "radiologist")
                reader = self._next_reader(l1.reader_rpps) if reader_rpps is None else self._reader(reader_rpps)
                if reader is None:
                    raise AssignmentRefused(f"RPPS {reader_rpps} is not a second reader of this programme "
                                            "(screening.readers)")
            except InvalidRequest as exc:
                self._audit(principal, "screening.assign", "refused", patient_ins=row.patient.get("ins"),
                            study_uid=row.study_uid, detail=str(exc))
                raise
            patient = PatientRef.model_validate(row.patient)
            current, priors = self._current_and_priors(patient, row.kos_uid, _actor(principal, token))
            assignment = Assignment(
                request_id=row.id, study_uid=row.study_uid, kos_uid=row.kos_uid, patient=patient,
                reader_rpps=reader.rpps, l1=l1, single_breast=row.single_breast,  # type: ignore[arg-type]
                priority=row.priority, requested_at=row.created_at,  # type: ignore[arg-type]
                programme_url=self.programme_url, l1_site_url=row.l1_site_url,
                priors=tuple(ExamRef(study_uid=e.study_uid, kos_uid=e.kos_uid) for e in priors))
            if self.parts.messenger is None:
                raise ScreeningRefused("this node cannot reach other nodes (no tls.cert_file)")
            self._grant(reader, [current, *priors], principal, patient.ins, row.id)
            try:
                self.parts.messenger.assign(reader.node, assignment, self._node_token())
            except NetworkError as exc:
                self.store.update_request(row.id, delivery_error=str(exc)[:500])
                raise
            row = self.store.update_request(row.id, status=CaseStatus.WAITING.value, reader_rpps=reader.rpps,
                                            reader_node=reader.node, assigned_at=self.store.now(),
                                            delivery_error=None)
        self._audit(principal, "screening.assign", "success", patient_ins=row.patient.get("ins"),
                    study_uid=row.study_uid, detail=f"{row.id} → RPPS {reader.rpps} at {reader.node}")
        return row

    def _grant(self, reader: ScreeningReader, exams: list[Exam], principal: Principal, ins: str,
               request_id: str) -> None:
        """Let the reader's node fetch each exam with its own token: a KOS grant in-process for what this node
        publishes, asked of the source for the others (a source that says no: the exam is fetched when the
        reader opens the case, with their token)."""
        for exam in exams:
            source = network_base_url(exam).rstrip("/")
            if source == self.own_url and self.parts.grants is not None:
                self.parts.grants.grant(exam.kos_uid, _host(reader.node), ttl_s=_GRANT_S, by=principal,
                                        purpose="screening-second-read", patient_ins=ins)
                continue
            try:
                if self.parts.messenger is None:
                    raise ScreeningRefused("this node cannot reach other nodes")
                self.parts.messenger.grant(source, exam.kos_uid, reader.node, request_id, self._node_token())
            except (NetworkError, ScreeningRefused) as exc:
                log.warning("screening: no KOS grant from the exam's source (fetched when the reader opens the "
                            "case)", kos=exam.kos_uid, source=source, error=str(exc))

    def grant_for_programme(self, kos_uid: str, reader_node: str, request_id: str, principal: Principal) -> None:
        """As an exam's source: grant a reader's node a KOS this node publishes, at the programme's request."""
        self._from_node(principal, self.programme_url, "a screening grant")
        studies = self.parts.published(kos_uid) if self.parts.published is not None else None
        if studies is None or self.parts.grants is None:
            raise Forbidden(f"KOS {kos_uid} is not a current manifest published by this node")
        if not reader_node.startswith("https://") or not _host(reader_node):
            raise ScreeningRefused(f"reader_node {reader_node!r} is not a node's https URL")
        self.parts.grants.grant(kos_uid, _host(reader_node), ttl_s=_GRANT_S, by=principal,
                                purpose="screening-second-read")
        self._audit(principal, "screening.grant", "success", kos_uid=kos_uid, study_uid=studies.split(",")[0],
                    detail=f"request {request_id}: KOS granted to {reader_node}")

    def record_status(self, request_id: str, status: CaseStatus, principal: Principal) -> RequestRow:
        """A reader's node says where the case is (never moves a done request back)."""
        self._require_programme()
        row = self.request(request_id)
        self._from_node(principal, row.reader_node or "", f"the status of request {request_id}")
        if status not in (CaseStatus.PREFETCHED, CaseStatus.IN_READING):
            raise ScreeningRefused(f"status {status.value} is not reported by a reader's node")
        if row.status in (CaseStatus.DONE, status):
            return row
        return self.store.update_request(request_id, status=status.value)

    # -- reader's node -----------------------------------------------------------------------------------

    def receive_assignment(self, assignment: Assignment, principal: Principal) -> CaseRow:
        """Put the case on the reader's worklist and start its prefetch (as this node, under the KOS grants)."""
        self._from_node(principal, self.programme_url, "an assignment")
        case = self.store.add_case(assignment.request_id, assignment.model_dump(mode="json"), assignment.reader_rpps)
        self._audit(principal, "screening.assignment", "success", patient_ins=assignment.patient.ins,
                    study_uid=assignment.study_uid, kos_uid=assignment.kos_uid,
                    detail=f"{assignment.request_id} for RPPS {assignment.reader_rpps}")
        if case.status == CaseStatus.WAITING:
            self._background(lambda: None if self.prefetch(case.id) else None)
        return case

    def case(self, case_id: str, principal: Principal | None = None) -> CaseRow:
        """A case of this node; with ``principal``, only the reader it is assigned to."""
        row = self.store.case(case_id)
        if row is None:
            raise ScreeningRefused(f"no screening case {case_id} on this node")
        if principal is not None and principal.kind != "developer" and principal.rpps != row.reader_rpps:
            raise Forbidden(f"case {case_id} is assigned to another reader")
        return row

    def _current_and_priors(self, patient: PatientRef, kos_uid: str, actor: Actor) -> tuple[Exam, list[Exam]]:
        """The exam (by its KOS) and the woman's earlier screening mammographies, most recent first."""
        if self.parts.directory is None:
            raise ScreeningRefused("this node has no registry (registry.base_url)")
        record = self.parts.directory.patient_record(traits_of(patient), actor)
        current = record.exam(kos_uid)
        if current is None:
            raise ScreeningRefused(f"the exam's KOS {kos_uid} is no longer in the registry")
        floor = datetime.min.replace(tzinfo=UTC)
        priors = [e for e in record.exams if e.study_uid != current.study_uid and "MG" in e.modalities
                  and (e.performed or floor) < (current.performed or datetime.max.replace(tzinfo=UTC))]
        priors.sort(key=lambda e: e.performed or floor, reverse=True)
        return current, priors[: self.config.max_priors]

    def _exams(self, case: CaseRow, actor: Actor) -> tuple[Exam, list[Exam]]:
        """The case's exam and the priors the programme named (as the registry lists them now)."""
        assignment = Assignment.model_validate(case.assignment)
        current, found = self._current_and_priors(assignment.patient, assignment.kos_uid, actor)
        named = [p.kos_uid for p in assignment.priors]
        by_kos = {e.kos_uid: e for e in found}
        if self.parts.directory is not None and any(k not in by_kos for k in named):
            record = self.parts.directory.patient_record(traits_of(assignment.patient), actor)
            by_kos.update({e.kos_uid: e for e in record.exams})
        return current, [by_kos[k] for k in named if k in by_kos]

    def _open(self, exams: list[Exam], actor: Actor, ins: str) -> None:
        if self.parts.remote_studies is None:
            raise ScreeningRefused("this node cannot reach other nodes (no tls.cert_file)")
        for exam in exams:
            self.parts.remote_studies.open(exam, actor, patient_id=ins)

    def prefetch(self, case_id: str) -> CaseRow:
        """Bring the exam and its priors into the node cache, as this node (in the background after an assignment)."""
        case = self.case(case_id)
        assignment = Assignment.model_validate(case.assignment)
        try:
            if self.parts.node_credential is None:
                raise ScreeningRefused("no node credential ([oidc] client): nothing can be fetched without a user")
            actor = self.parts.node_credential.actor(on_behalf_of=f"screening case {case_id}")
            current, priors = self._exams(case, actor)
            exams = [current, *priors]
            self._open(exams, actor, assignment.patient.ins)
            if self.parts.site_store is None or self.parts.remote_store is None:
                raise ScreeningRefused("this node has no cache for remote studies")
            counted: list[int] = []
            for exam in exams:
                # The viewer's searches (series metadata, kept in memory) and its retrievals (the disk cache).
                for ref in exam.series:
                    self.parts.remote_store.series_metadata(exam, actor, ref)
                prefetch_study(self.parts.site_store, exam.study_uid, lambda _i: counted.append(1))
            instances = len(counted)
        except (DrimboxError, GatewayError) as exc:
            log.warning("screening prefetch failed", case=case_id, error=f"{type(exc).__name__}: {exc}")
            self._audit(None, "screening.prefetch", "failure", patient_ins=assignment.patient.ins,
                        study_uid=assignment.study_uid, detail=f"{type(exc).__name__}: {exc}"[:500])
            return self.store.update_case(case_id, prefetch_error=f"{type(exc).__name__}: {exc}"[:500])
        priors_json = {"studies": [{"study_uid": e.study_uid, "kos_uid": e.kos_uid,
                                    "performed": e.performed.isoformat() if e.performed else None} for e in priors]}
        fields: dict[str, object] = {"priors": priors_json, "prefetched_at": self.store.now(), "prefetch_error": None}
        if self.store.case(case_id).status == CaseStatus.WAITING:  # type: ignore[union-attr]
            fields["status"] = CaseStatus.PREFETCHED.value
        case = self.store.update_case(case_id, **fields)
        self._audit(None, "screening.prefetch", "success", patient_ins=assignment.patient.ins,
                    study_uid=current.study_uid, detail=f"{len(exams)} exam(s), {instances} instance(s), on behalf "
                                                        f"of {actor.subject}")
        if self.parts.messenger is not None:
            self.parts.messenger.status(assignment.programme_url, case_id, CaseStatus.PREFETCHED, actor.token)
        return case

    def retry_prefetch(self, case_id: str, principal: Principal) -> CaseRow:
        """Prefetch a case again (after a failure: a source was down), in the background."""
        case = self.case(case_id, principal)
        if case.status == CaseStatus.DONE:
            raise ScreeningRefused(f"case {case_id} is read: nothing to prefetch")
        self._background(lambda: None if self.prefetch(case_id) else None)
        return case

    def open_case(self, case_id: str, principal: Principal, token: str) -> str:
        """The reader opens the case: the exams are opened for them, the case is in reading; the viewer URL."""
        case = self.case(case_id, principal)
        assignment = Assignment.model_validate(case.assignment)
        actor = _actor(principal, token)
        priors = [p["study_uid"] for p in case.priors.get("studies", [])]
        if case.prefetched_at is None:
            current, prior_exams = self._exams(case, actor)
            exams = [current, *prior_exams]
            priors = [e.study_uid for e in prior_exams]
        else:
            exams = self._cached_exams(case, actor)
        self._open(exams, actor, assignment.patient.ins)
        if case.status in (CaseStatus.WAITING, CaseStatus.PREFETCHED):
            self.store.update_case(case_id, status=CaseStatus.IN_READING.value, opened_at=self.store.now())
            if self.parts.messenger is not None:
                self.parts.messenger.status(assignment.programme_url, case_id, CaseStatus.IN_READING,
                                            self._node_token())
        self._audit(principal, "screening.open", "success", patient_ins=assignment.patient.ins,
                    study_uid=assignment.study_uid, detail=f"case {case_id}, priors {len(priors)}")
        return case_viewer_url(assignment.study_uid, priors)

    def _cached_exams(self, case: CaseRow, actor: Actor) -> list[Exam]:
        """The exams the prefetch opened (kept by the viewer's index), re-read from the registry if gone."""
        studies = self.parts.remote_studies
        uids = [Assignment.model_validate(case.assignment).study_uid,
                *(p["study_uid"] for p in case.priors.get("studies", []))]
        found = [studies.get(uid) for uid in uids] if studies is not None else []
        if all(found):
            return [f[0] for f in found if f is not None]
        current, priors = self._exams(case, actor)
        return [current, *priors]

    def record_reading(self, case_id: str, entry: L2ReadingIn, principal: Principal, token: str) -> CaseRow:
        """The second reading: the result SR is built, kept, returned to the programme and the L1 site."""
        case = self.case(case_id, principal)
        if case.status == CaseStatus.DONE:
            raise ScreeningRefused(f"case {case_id} is already read")
        assignment = Assignment.model_validate(case.assignment)
        wanted = {assignment.single_breast} if assignment.single_breast else {"R", "L"}
        if {b.laterality for b in entry.breasts} != wanted:
            raise ScreeningRefused(f"the second reading must give breasts {sorted(wanted)}")
        l2 = entry.by(principal.rpps or assignment.reader_rpps, principal.display_name)
        actor = _actor(principal, token)
        exam = self._cached_exams(case, actor)[0]
        discordant = is_discordant(assignment.l1, l2)
        sr = build_result_sr(self.exam_headers(exam, actor), request_id=case_id, l1=assignment.l1, l2=l2,
                             discordant=discordant, institution=self.settings.publish.organisation_name)
        buffer = BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        case = self.store.update_case(case_id, status=CaseStatus.DONE.value, done_at=self.store.now(),
                                      l2=l2.model_dump(mode="json"), sr=data)
        self._audit(principal, "screening.reading", "success", patient_ins=assignment.patient.ins,
                    study_uid=assignment.study_uid, sop_instance_uids=(str(sr.SOPInstanceUID),),
                    detail=f"case {case_id}: {l2.outcome}, discordant={discordant}")
        return self.deliver(case_id)

    def deliver(self, case_id: str) -> CaseRow:
        """Send (again) the result SR of a read case to the programme and the L1 site."""
        case = self.case(case_id)
        if case.sr is None:
            raise ScreeningRefused(f"case {case_id} has no result yet")
        assignment = Assignment.model_validate(case.assignment)
        targets: dict[str, list[str]] = {}
        targets.setdefault(assignment.programme_url.rstrip("/"), []).append("programme")
        targets.setdefault(assignment.l1_site_url.rstrip("/"), []).append("l1")
        errors = []
        for url, roles in targets.items():
            try:
                if self.parts.messenger is None:
                    raise ScreeningRefused("this node cannot reach other nodes (no tls.cert_file)")
                self.parts.messenger.result(url, case.sr, self._node_token(), roles, assignment.kos_uid)
            except (NetworkError, ScreeningRefused) as exc:
                errors.append(f"{'+'.join(roles)}: {exc}")
        return self.store.update_case(case_id, delivery_error="; ".join(errors)[:500] or None)

    # -- programme and L1 site: the result -----------------------------------------------------------------

    def receive_result(self, data: bytes, roles: list[str], principal: Principal, kos_uid: str) -> str:
        """Record a result SR sent by a reader's node, about the exam of ``kos_uid``; returns the request id."""
        try:
            ds = pydicom.dcmread(BytesIO(data))
            problem = length_problem(BytesIO(data), len(data), ds)
        except READ_ERRORS as exc:  # hostile bytes: refused, never a 500
            raise ScreeningRefused(f"the result is not a DICOM file: {type(exc).__name__}: {exc}") from exc
        if problem is not None:
            raise ScreeningRefused(f"the result is not a well-formed DICOM file: {problem}")
        document = read_result_sr(ds)
        if "programme" in roles:
            self._require_programme()
            row = self.request(document.request_id)
            if row.study_uid != document.study_uid:
                raise ScreeningRefused(f"the result SR is of study {document.study_uid}, "
                                       f"the request of {row.study_uid}")
            self._from_node(principal, row.reader_node or "", f"the result of request {row.id}")
            if document.l2.reader_rpps != row.reader_rpps:
                raise Forbidden(f"the result of request {row.id} must be read by its reader (RPPS {row.reader_rpps})")
            if row.status != CaseStatus.DONE:
                self.store.update_request(row.id, status=CaseStatus.DONE.value, l2=document.l2.model_dump(mode="json"),
                                          result_at=self.store.now(), discordant=document.discordant, sr=data)
        if "l1" in roles:
            if principal.kind not in ("node", "developer"):
                raise Forbidden("a result comes from the reader's node, with its own credential")
            studies = self.parts.published(kos_uid) if self.parts.published is not None else None
            if studies is None or document.study_uid not in studies.split(","):
                raise Forbidden(f"the result's study {document.study_uid} is not an exam this site publishes "
                                f"(KOS {kos_uid})")
            self.store.add_result(document.request_id, study_uid=document.study_uid, ins=_ins_of(ds),
                                  l1=document.l1.model_dump(mode="json"), l2=document.l2.model_dump(mode="json"),
                                  discordant=document.discordant, sr=data)
        self._audit(principal, "screening.result", "success", study_uid=document.study_uid,
                    sop_instance_uids=(document.sop_instance_uid,),
                    detail=f"{document.request_id} as {'+'.join(roles)}: {document.l2.outcome}, "
                           f"discordant={document.discordant}")
        return document.request_id

    def results(self, study_uid: str | None = None) -> list[ResultRow]:
        return list(self.store.results(study_uid=study_uid))
