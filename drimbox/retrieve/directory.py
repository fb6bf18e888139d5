"""The registry seen from the consumer (F6): a patient's exams found with ITI-18, read with ITI-43.

:class:`RegistryDirectory` implements :class:`~drimbox.retrieve.model.ExamDirectory` over the node's
XDS.b client, the same way it would talk to the DMP:

1. **ITI-18 FindDocuments** by the patient's XDS id (INS), status Approved, typeCode ``IMG-KOS``.
   Entries whose confidentialityCode carries the DMP visibility code ``MASQUE_PS`` (scheme
   ``1.2.250.1.213.1.1.4.13``) are masked to professionals: never read, only counted in
   :attr:`PatientRecord.hidden`. The real DMP filters them itself for a professional; this node
   filters too, so that a registry that returns them (ours, for the patient's own access) never
   leaks them into a page.
2. **ITI-43** of every visible KOS, in one request per repository, each parsed by
   :mod:`drimbox.retrieve.kos_reader`. A manifest (title 113030) becomes an :class:`Exam`; a
   key-image note (another title) gives the ``key_images`` of the exam of its study. A document
   the repository does not return, or a KOS that cannot be used, is left out, logged and listed in
   :attr:`PatientRecord.problems`; it never fails the whole record.
3. **ITI-18 FindDocuments** by ``referenceIdList`` = the Study Instance UIDs found: the report
   (CDA ``text/xml`` or PDF, classCode ``10``/typeCode LOINC ``18748-4``) published in the same
   submission as the KOS (:mod:`drimbox.publish.submission`) becomes ``Exam.report``. Querying by
   study rather than by class keeps the answer small on a real DMP, where a patient has many
   unrelated reports.

Exams come newest first (serviceStartTime, else the KOS's StudyDate/StudyTime; when the two are more
than a day apart the entry's metadata is wrong — it comes from the report — and the images' own
study date is kept, with a warning).

**Who the registry sees (VIHF).** Every request carries a VIHF 3.0 assertion signed with the
node's organisation certificate (``authentification indirecte``), naming the patient
(``resource-id`` = the INS, which the registry requires and checks against the query). When a
practitioner acts (:class:`Actor`), the assertion names them: ``NameID`` = ``8`` + RPPS (a user
without RPPS: ``<IdNatStruct>/<subject>``, the VIHF form of a local identifier), their display name,
the profession and specialty of the site (``publish.author_role``/``author_specialty``: the node's
users are its imaging physicians), and the access mode ``bris_de_glace`` when ``actor.emergency``
(``normal`` otherwise). When the node acts by itself (``actor=None``: background checks of
deprecation), ``NameID`` is ``<IdNatStruct>/<node name>`` and the subject name is the software and
the node — the VIHF rule for an automated process — in ``normal`` mode.

**Which patient a KOS belongs to.** ITI-43 and GetDocuments need the patient in the assertion, but
``document()`` and ``is_deprecated()`` receive only a document. The directory therefore records,
in ``<data_dir>/directory.sqlite3``, the patient of every document it has listed (a KOS or report
UID → XDS patient id); it survives restarts, so the cache expiry can ask about a KOS listed days
before. A document never listed has no known patient: ``is_deprecated`` answers True (the node
cannot vouch for it), ``document`` raises :class:`RegistryRefused`.

Errors: no answer, timeout or a reply that is not XDS (an HTTP error page without SOAP included) →
:class:`RegistryUnavailable`; a transient registry error (busy) too; a Failure or SOAP fault →
:class:`RegistryRefused`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from zoneinfo import ZoneInfo

import httpx
import structlog
from lxml import etree

from drimbox.config import NodeSettings
from drimbox.errors import ConfigError, RegistryRefused, RegistryUnavailable
from drimbox.publish.dmp import VISIBILITY_SCHEME
from drimbox.publish.errors import RegistryError, XdsTransportError
from drimbox.publish.service import http_client, signer_of, vihf_profile, xds_endpoints
from drimbox.publish.submission import DSG_CLASS, KOS_TYPE, REPORT_TYPE, SubmissionPolicy
from drimbox.publish.vihf import VihfIssuer, VihfSubject
from drimbox.publish.xds.client import XdsClient
from drimbox.publish.xds.requests import FindDocumentsQuery
from drimbox.publish.xds.rim import Code, RegistryDocument
from drimbox.publish.xds.vocabulary import SCHEME
from drimbox.reports import Practitioner
from drimbox.retrieve.kos_reader import KosContent, MalformedKos, read_kos
from drimbox.retrieve.model import Actor, Exam, InstanceRef, PatientRecord, PatientTraits, RelatedDocument

__all__ = ["EMERGENCY_PURPOSE", "MASKED_TO_PROFESSIONALS", "RegistryDirectory", "is_masked"]

log = structlog.get_logger(__name__)

MASKED_TO_PROFESSIONALS = Code("MASQUE_PS", VISIBILITY_SCHEME)
"""The DMP visibility code of a document masked to health professionals (MetaDMPMSS ``MASQUE_PS``)."""
EMERGENCY_PURPOSE = "bris_de_glace"
"""VIHF access mode (``purposeofuse``, scheme 1.2.250.1.213.1.1.4.248) of emergency access."""
_SAME_EXAM = timedelta(hours=26)
"""Largest gap between serviceStartTime (UTC) and the KOS's StudyDate/StudyTime (a zone guess when the
KOS has no TimezoneOffsetFromUTC: UTC-12 to UTC+14) for both to describe the same exam."""
_REPORT_CLASS = Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
_REPORT_MIME_TYPES = frozenset({"text/xml", "application/pdf"})
_STUDY_REFERENCE = "urn:ihe:iti:xds:2016:studyInstanceUID"
_ACCESSION_REFERENCE = "urn:ihe:iti:xds:2013:accession"
_KNOWN_MODALITIES = frozenset({
    "AR", "AS", "BI", "BMD", "CR", "CT", "DG", "DX", "EPS", "ES", "GM", "HD", "IO", "IVOCT", "IVUS", "LS", "MG",
    "MR", "NM", "OCT", "OP", "OPT", "OT", "PT", "PX", "RF", "RG", "SM", "TG", "US", "XA", "XC",
})


def is_masked(document: RegistryDocument) -> bool:
    """Whether the DMP visibility codes mask ``document`` to professionals."""
    return any(code.code == MASKED_TO_PROFESSIONALS.code and code.scheme == MASKED_TO_PROFESSIONALS.scheme
               for code in document.codes(SCHEME.DE_CONFIDENTIALITY))


def _hl7_unescape(value: str) -> str:
    for esc, char in (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\")):
        value = value.replace(esc, char)
    return value


def _xds_time(value: str | None) -> datetime | None:
    """An XDS DTM (UTC, ``YYYY[MM[DD[hh[mm[ss]]]]]``) as an aware datetime."""
    if not value or not value.isdigit() or len(value) < 4:
        return None
    padded = value + "0101000000"[len(value) - 4:] if len(value) < 14 else value[:14]
    try:
        return datetime.strptime(padded, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _reference(values: Iterable[str], id_type: str) -> str | None:
    """The id of the first referenceIdList value of type ``id_type`` (CXi, type in CX.5)."""
    for value in values:
        parts = value.split("^")
        if len(parts) > 4 and parts[4] == id_type and parts[0]:
            return _hl7_unescape(parts[0])
    return None


def _source_site(document: RegistryDocument, kos: KosContent | None) -> str:
    """The author institution's name (XON.1) of the entry, else the KOS's InstitutionName."""
    for author in document.authors:
        for institution in author.institutions:
            name = _hl7_unescape(institution.split("^")[0]).strip()
            if name:
                return name
    return kos.institution if kos else ""


@dataclass(frozen=True, slots=True)
class _Codes:
    """Where the consumer recognises modality and region event codes (the network's shared settings)."""

    modality_scheme: str
    region_scheme: str


class _PatientIndex:
    """Document UID → XDS patient id of every document the directory listed (see module docstring)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, str] = {}
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db, db:
                db.execute("CREATE TABLE IF NOT EXISTS documents "
                           "(unique_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        assert self._path is not None
        return sqlite3.connect(self._path, timeout=30)

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        rows = [(uid, patient) for uid, patient in pairs if uid and patient]
        with self._lock:
            self._memory.update(rows)
            if self._path is not None and rows:
                with closing(self._connect()) as db, db:
                    db.executemany("INSERT OR REPLACE INTO documents (unique_id, patient_id) VALUES (?, ?)", rows)

    def patient_of(self, unique_id: str) -> str | None:
        with self._lock:
            known = self._memory.get(unique_id)
            if known is not None or self._path is None:
                return known
            with closing(self._connect()) as db:
                row = db.execute("SELECT patient_id FROM documents WHERE unique_id = ?", (unique_id,)).fetchone()
            if row is not None:
                self._memory[unique_id] = str(row[0])
            return str(row[0]) if row is not None else None


@contextmanager
def _registry_call(what: str) -> Iterator[None]:
    """Map the XDS client's errors onto the consumer's (module docstring)."""
    try:
        yield
    except XdsTransportError as exc:
        raise RegistryUnavailable(f"registry unreachable ({what}): {exc}") from exc
    except RegistryError as exc:
        # An HTTP error without a SOAP body (the client's ``HTTPnnn`` detail) is not an XDS answer: a
        # wrong URL, a proxy's error page. Like a busy registry, it is not the registry refusing.
        not_xds = bool(exc.codes) and all(code.startswith("HTTP") for code in exc.codes)
        if not exc.permanent or not_xds:
            raise RegistryUnavailable(f"registry unavailable ({what}): {exc}") from exc
        raise RegistryRefused(f"registry refused {what}: {exc}") from exc
    except etree.LxmlError as exc:
        raise RegistryUnavailable(f"registry answered something that is not XDS ({what}): {exc}") from exc


class RegistryDirectory:
    """:class:`~drimbox.retrieve.model.ExamDirectory` over XDS.b (see the module docstring).

    Parameters
    ----------
    xds:
        The XDS.b client (its ``httpx.Client`` is closed by :meth:`close` when ``owns_http``).
    vihf:
        Issues the signed VIHF assertions of the node's structure.
    node_name, structure_id:
        The node's name and IdNatStruct (``Identifiant_Structure``; the node's own NameID).
    profession, specialty:
        VIHF role of the practitioners acting through this node.
    zone:
        The zone of KOS dates without TimezoneOffsetFromUTC.
    index_path:
        Where the document → patient index persists (``None``: in memory only).
    """

    def __init__(self, xds: XdsClient, vihf: VihfIssuer, *, node_name: str, structure_id: str, profession: Code,
                 specialty: Code | None, zone: tzinfo = UTC, modality_scheme: str = "1.2.250.1.213.1.1.5.618",
                 region_scheme: str = "1.2.250.1.213.1.1.5.695", report_class: Code = _REPORT_CLASS,
                 index_path: Path | None = None, http: httpx.Client | None = None) -> None:
        self.xds = xds
        self.vihf = vihf
        self.node_name = node_name
        self.structure_id = structure_id
        self.profession = profession
        self.specialty = specialty
        self.zone = zone
        self.report_class = report_class
        self._codes = _Codes(modality_scheme, region_scheme)
        self._index = _PatientIndex(index_path)
        self._http = http

    @classmethod
    def from_settings(cls, settings: NodeSettings, *, timeout_s: float | None = None) -> RegistryDirectory:
        """The directory of a node: its registry endpoints, organisation certificate, VIHF profile, codes.

        ``timeout_s`` bounds each registry request (default ``publish.timeout_s``).

        Raises
        ------
        ConfigError
            No registry configured, no organisation certificate, or no ``publish.organisation_id``.
        """
        endpoints = xds_endpoints(settings)
        if endpoints is None:
            raise ConfigError("the registry look-up needs registry.base_url (or publish.registry_url and "
                              "publish.repository_url)", key="registry.base_url")
        signer = signer_of(settings)
        if signer is None:
            raise ConfigError("the registry look-up signs its VIHF assertions: set publish.signing_cert_file/"
                              "key_file (or tls.cert_file/key_file)", key="publish.signing_cert_file")
        publish = settings.publish
        if not publish.organisation_id:
            raise ConfigError("the VIHF assertion names the structure: set publish.organisation_id (IdNatStruct)",
                              key="publish.organisation_id")
        policy = SubmissionPolicy.from_settings(publish, settings.name)
        http = http_client(settings)
        if timeout_s is not None:
            http.timeout = httpx.Timeout(timeout_s)
        return cls(
            XdsClient(endpoints, http), VihfIssuer(vihf_profile(settings, publish.organisation_id), signer),
            node_name=settings.name, structure_id=publish.organisation_id, profession=policy.author_role,
            specialty=policy.author_specialty, zone=ZoneInfo(publish.timezone),
            modality_scheme=publish.modality_scheme, region_scheme=publish.region_scheme,
            report_class=policy.cda_class, index_path=settings.storage.data_dir / "directory.sqlite3", http=http,
        )

    def close(self) -> None:
        """Release the HTTP connections (when the directory built its own client)."""
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RegistryDirectory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- VIHF -----------------------------------------------------------------------------------------

    def vihf_subject(self, actor: Actor | None, patient_id: str) -> VihfSubject:
        """Who the registry is told acts, on ``patient_id`` (the module docstring says why so)."""
        if actor is None:
            person = Practitioner(id_nat_ps=f"{self.structure_id}/{self.node_name}",
                                  family_name=f"{self.vihf.profile.lps_name} {self.vihf.profile.lps_version} "
                                              f"(noeud {self.node_name})", given_name="")
            return VihfSubject(person, self.profession, self.specialty, patient_id=patient_id)
        if actor.rpps:
            national_id = f"8{actor.rpps}"
        else:
            national_id = f"{self.structure_id}/{''.join(actor.subject.split()) or 'anonyme'}"
        person = Practitioner(id_nat_ps=national_id, family_name=actor.display_name or actor.subject, given_name="")
        return VihfSubject(person, self.profession, self.specialty, patient_id=patient_id,
                           purpose=EMERGENCY_PURPOSE if actor.emergency else "normal")

    def assertion(self, actor: Actor | None, patient_id: str) -> etree._Element:
        """The signed VIHF assertion a request about ``patient_id`` carries for ``actor``."""
        return self.vihf.issue(self.vihf_subject(actor, patient_id))

    # -- ExamDirectory ----------------------------------------------------------------------------------

    def patient_record(self, traits: PatientTraits, actor: Actor) -> PatientRecord:
        """The patient's approved exams, newest first (module docstring: steps, masking, problems)."""
        patient_id = traits.xds_patient_id
        assertion = self.assertion(actor, patient_id)
        with _registry_call("ITI-18 FindDocuments"):
            entries = self.xds.find_documents(FindDocumentsQuery(patient_id, type_codes=(KOS_TYPE,)),
                                              assertion=assertion)
        hidden = sum(1 for e in entries if is_masked(e))
        visible = [e for e in entries if not is_masked(e) and e.approved]
        problems: list[str] = []
        contents = self._read_all(visible, assertion, problems)
        manifests: list[tuple[RegistryDocument, KosContent]] = []
        notes: dict[str, list[InstanceRef]] = {}
        for entry in visible:
            content = contents.get(entry.unique_id)
            if content is None:
                continue
            if content.is_manifest:
                manifests.append((entry, content))
            else:
                notes.setdefault(content.study_uid, []).extend(content.instances)
        exams = [self._exam(entry, content) for entry, content in manifests]
        exams = [replace(e, key_images=tuple(dict.fromkeys(notes.get(e.study_uid, ())))) for e in exams]
        reports, masked_reports = self._reports(patient_id, exams, assertion)
        exams = [replace(e, report=reports.get(e.kos_uid)) for e in exams]
        exams.sort(key=lambda e: (e.performed is not None, e.performed or datetime.min.replace(tzinfo=UTC)),
                   reverse=True)
        self._index.remember([(e.unique_id, patient_id) for e in visible]
                             + [(r.unique_id, patient_id) for r in reports.values()])
        log.info("registry look-up", patient=patient_id, exams=len(exams), hidden=hidden + masked_reports,
                 problems=len(problems), emergency=actor.emergency)
        return PatientRecord(traits=traits, exams=tuple(exams), hidden=hidden + masked_reports,
                             problems=tuple(problems))

    def document(self, document: RelatedDocument, actor: Actor) -> bytes:
        """The content of a document the directory listed (ITI-43)."""
        patient_id = self._index.patient_of(document.unique_id)
        if patient_id is None:
            raise RegistryRefused(f"document {document.unique_id} was not listed by this node: look the patient up "
                                  "first (the registry needs the patient in the VIHF assertion)")
        with _registry_call("ITI-43"):
            found = self.xds.retrieve([(document.repository_unique_id, document.unique_id)],
                                      assertion=self.assertion(actor, patient_id))
        for item in found:
            if item.document_unique_id == document.unique_id:
                return item.content
        raise RegistryRefused(f"the repository did not return document {document.unique_id}")

    def is_deprecated(self, kos_uid: str, actor: Actor | None = None) -> bool:
        """Whether the registry shows this KOS deprecated, or no longer has it (ITI-18 GetDocuments)."""
        patient_id = self._index.patient_of(kos_uid)
        if patient_id is None:
            log.warning("deprecation check of a KOS never listed by this node: treated as gone", kos=kos_uid)
            return True
        with _registry_call("ITI-18 GetDocuments"):
            found = self.xds.get_documents(unique_ids=[kos_uid], assertion=self.assertion(actor, patient_id))
        entry = next((d for d in found if d.unique_id == kos_uid), None)
        return entry is None or not entry.approved

    # -- steps -----------------------------------------------------------------------------------------

    def _read_all(self, entries: Sequence[RegistryDocument], assertion: etree._Element,
                  problems: list[str]) -> dict[str, KosContent]:
        """ITI-43 of ``entries`` (one request per repository), each parsed; failures go to ``problems``."""
        by_repository: dict[str, list[str]] = {}
        for entry in entries:
            repository = entry.repository_unique_id
            if not repository:
                problems.append(f"KOS {entry.unique_id}: the registry gives no repositoryUniqueId")
                continue
            by_repository.setdefault(repository, []).append(entry.unique_id)
        contents: dict[str, KosContent] = {}
        for repository, unique_ids in by_repository.items():
            try:
                with _registry_call("ITI-43"):
                    found = self.xds.retrieve([(repository, uid) for uid in unique_ids], assertion=assertion)
            except RegistryRefused as exc:
                log.warning("repository refused the KOS", repository=repository, error=str(exc))
                problems.extend(f"KOS {uid}: {exc}" for uid in unique_ids)
                continue
            returned = {d.document_unique_id: d.content for d in found}
            for uid in unique_ids:
                data = returned.get(uid)
                if data is None:
                    problems.append(f"KOS {uid}: not returned by repository {repository}")
                    log.warning("KOS not returned by the repository", kos=uid, repository=repository)
                    continue
                try:
                    content = read_kos(data, zone=self.zone)
                except MalformedKos as exc:
                    problems.append(f"KOS {uid}: {exc}")
                    log.warning("malformed KOS skipped", kos=uid, error=str(exc))
                    continue
                if content.sop_instance_uid != uid:
                    problems.append(f"KOS {uid}: its SOPInstanceUID is {content.sop_instance_uid}")
                    log.warning("KOS with another SOPInstanceUID than its entry skipped", kos=uid,
                                sop_instance_uid=content.sop_instance_uid)
                    continue
                contents[uid] = content
        return contents

    def _exam(self, entry: RegistryDocument, kos: KosContent) -> Exam:
        events = entry.codes(SCHEME.DE_EVENT)
        modalities = tuple(dict.fromkeys(
            c.code for c in events
            if c.scheme == self._codes.modality_scheme
            or (c.code in _KNOWN_MODALITIES and c.scheme != self._codes.region_scheme)
        )) or kos.modalities
        regions = [c.display or c.code for c in events if c.scheme == self._codes.region_scheme]
        comments = entry.comments if entry.comments and entry.comments != "KOS" else ""
        accession = _reference(entry.reference_ids, _ACCESSION_REFERENCE) or kos.accession_number
        performed = _xds_time(entry.slot("serviceStartTime")) or kos.performed
        if performed and kos.performed and abs(performed - kos.performed) > _SAME_EXAM:
            # More than a time-zone guess apart: the entry's metadata (from the report) is wrong, and the
            # images' own date is what a reader compares priors by.
            log.warning("serviceStartTime and the KOS's study date disagree: the study date is kept",
                        kos=kos.sop_instance_uid, service_start=performed.isoformat(),
                        study_date=kos.performed.isoformat())
            performed = kos.performed
        return Exam(
            kos_uid=kos.sop_instance_uid, entry_uuid=entry.entry_uuid,
            repository_unique_id=entry.repository_unique_id or "", study_uid=kos.study_uid,
            accession_number=accession, performed=performed,
            modalities=modalities, description=kos.study_description or comments or entry.title,
            body_part=", ".join(dict.fromkeys(regions)), source_site=_source_site(entry, kos), series=kos.series,
            confidentiality=tuple(c.code for c in entry.codes(SCHEME.DE_CONFIDENTIALITY)),
        )

    def _is_report(self, document: RegistryDocument) -> bool:
        if document.mime_type not in _REPORT_MIME_TYPES:
            return False
        classes = document.codes(SCHEME.DE_CLASS)
        types = document.codes(SCHEME.DE_TYPE)
        if any(c.code == DSG_CLASS.code for c in classes) or any(t.code == KOS_TYPE.code for t in types):
            return False
        return (any(c.code == self.report_class.code and c.scheme == self.report_class.scheme for c in classes)
                or any(t.code == REPORT_TYPE.code and t.scheme == REPORT_TYPE.scheme for t in types))

    def _reports(self, patient_id: str, exams: Sequence[Exam],
                 assertion: etree._Element) -> tuple[dict[str, RelatedDocument], int]:
        """KOS uid → its report, and how many reports were masked."""
        if not exams:
            return {}, 0
        studies = [f"{e.study_uid}^^^^{_STUDY_REFERENCE}" for e in exams]
        with _registry_call("ITI-18 FindDocuments (reports)"):
            found = self.xds.find_documents(FindDocumentsQuery(patient_id, reference_ids=tuple(studies)),
                                            assertion=assertion)
        reports = [d for d in found if d.approved and self._is_report(d)]
        masked = sum(1 for d in reports if is_masked(d))
        by_study: dict[str, RegistryDocument] = {}
        by_accession: dict[str, RegistryDocument] = {}
        for document in sorted((d for d in reports if not is_masked(d)),
                               key=lambda d: _xds_time(d.slot("creationTime")) or datetime.min.replace(tzinfo=UTC)):
            study = _reference(document.reference_ids, _STUDY_REFERENCE)
            accession = _reference(document.reference_ids, _ACCESSION_REFERENCE)
            if study:
                by_study[study] = document  # the latest report of a study wins
            if accession:
                by_accession[accession] = document
        out: dict[str, RelatedDocument] = {}
        for exam in exams:
            report = by_study.get(exam.study_uid) or (
                by_accession.get(exam.accession_number) if exam.accession_number else None)
            if report is not None:
                out[exam.kos_uid] = RelatedDocument(
                    unique_id=report.unique_id, repository_unique_id=report.repository_unique_id or "",
                    mime_type=report.mime_type, title=report.title,
                    creation_time=_xds_time(report.slot("creationTime")))
        return out, masked
