"""What the consumer side knows of a patient's exams in the network (F6) and of a retrieval (F7).

These value objects are the contract between the registry look-up (:mod:`drimbox.retrieve.directory`),
the retrieval (:mod:`drimbox.retrieve.transfer`), the import (:mod:`drimbox.retrieve.importer`), the
pages, the DIMSE face and XDM export. They hold references only, never pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

__all__ = [
    "Actor",
    "Exam",
    "ExamDirectory",
    "InstanceRef",
    "PatientRecord",
    "PatientTraits",
    "RelatedDocument",
    "RetrievalProgress",
    "RetrievalReport",
    "SeriesRef",
]

Sex = Literal["M", "F", "U"]


@dataclass(frozen=True, slots=True)
class PatientTraits:
    """The strict INS traits of a patient (Référentiel national d'identitovigilance), as a contextual
    call gives them (F5) and as pages show them.

    ``ins`` is the 15-character INS (NIR or NIA, Corsican ``2A``/``2B`` included), ``ins_oid`` its
    assigning authority (``1.2.250.1.213.1.4.8`` NIR, ``.9`` NIA, ``.10`` test, ``.11`` demo).
    ``local_id``/``local_issuer`` are the caller's own patient id (IPP) when it gave one.
    """

    ins: str
    ins_oid: str
    birth_name: str
    first_given_name: str
    birth_date: date
    sex: Sex
    birth_place: str | None = None
    """INSEE code of the birth place (``Address.district``), ``99xxx`` abroad."""
    local_id: str | None = None
    local_issuer: str | None = None

    @property
    def xds_patient_id(self) -> str:
        """The XDS patient id, ``<INS>^^^&<OID>&ISO^NH``."""
        return f"{self.ins}^^^&{self.ins_oid}&ISO^NH"


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """One instance a KOS references."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """One series a KOS references, where to retrieve it, and its instances."""

    series_uid: str
    retrieve_url: str
    """WADO-RS series URL on the source node's network face (RetrieveURL (0008,1190))."""
    instances: tuple[InstanceRef, ...]
    modality: str | None = None

    @property
    def host(self) -> str:
        """The source node's host (what the trust list is checked against)."""
        return urlsplit(self.retrieve_url).hostname or ""


@dataclass(frozen=True, slots=True)
class RelatedDocument:
    """A document published with the exam (the report: CDA or PDF), read with ITI-43."""

    unique_id: str
    repository_unique_id: str
    mime_type: str
    title: str
    creation_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Exam:
    """One published exam: its KOS document entry and what the KOS references.

    ``key_images`` lists the instances a key-image note (KOS with title other than Manifest) selects,
    when the exam has one.
    """

    kos_uid: str
    """The KOS SOP Instance UID (= XDS uniqueId); what ``KOS-SOPInstanceUID`` carries."""
    entry_uuid: str
    repository_unique_id: str
    study_uid: str
    accession_number: str | None
    performed: datetime | None
    """serviceStartTime (UTC), else the KOS's StudyDate/StudyTime."""
    modalities: tuple[str, ...]
    description: str
    body_part: str
    source_site: str
    """Author institution (name) of the document entry."""
    series: tuple[SeriesRef, ...]
    report: RelatedDocument | None = None
    key_images: tuple[InstanceRef, ...] = ()
    confidentiality: tuple[str, ...] = ()
    """Confidentiality codes of the entry (``N``, and the DMP visibility codes when present)."""

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series)

    @property
    def series_count(self) -> int:
        return len(self.series)

    def sop_instance_uids(self) -> frozenset[str]:
        """Every instance the KOS references."""
        return frozenset(i.sop_instance_uid for s in self.series for i in s.instances)


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """What the registry knows of one patient: their exams newest first (F6)."""

    traits: PatientTraits
    exams: tuple[Exam, ...]
    hidden: int = 0
    """Documents not shown because the DMP visibility codes mask them to professionals."""
    problems: tuple[str, ...] = ()
    """Documents that could not be used (a malformed KOS, one the repository did not return): one line
    each, for the page and the operator; the other exams are shown."""

    def exam(self, kos_uid: str) -> Exam | None:
        return next((e for e in self.exams if e.kos_uid == kos_uid), None)

    def by_study(self, study_uid: str) -> Exam | None:
        return next((e for e in self.exams if e.study_uid == study_uid), None)


@dataclass(frozen=True, slots=True)
class Actor:
    """On whose behalf the consumer acts: the practitioner (from their token or session), the bearer
    token to forward to source nodes, and whether this is emergency access (``Situation``)."""

    subject: str
    rpps: str | None
    role: str | None
    display_name: str | None
    token: str
    emergency: bool = False


class ExamDirectory(Protocol):
    """The registry seen from the consumer (F6): ITI-18 by INS, ITI-43 of each KOS and report.

    Raises :class:`drimbox.errors.UpstreamUnavailable` when the registry cannot be reached.
    """

    def patient_record(self, traits: PatientTraits, actor: Actor) -> PatientRecord:
        """The patient's approved IMG-KOS entries, read and parsed, newest first; masked ones counted in ``hidden``."""
        ...

    def document(self, document: RelatedDocument, actor: Actor) -> bytes:
        """The content of a related document (the report), ITI-43."""
        ...

    def is_deprecated(self, kos_uid: str, actor: Actor | None = None) -> bool:
        """Whether the registry shows this KOS deprecated (or gone); ``actor=None`` acts as the node."""
        ...


class RetrievalProgress(Protocol):
    """Progress callbacks of a retrieval (called from worker threads)."""

    def series_started(self, series: SeriesRef) -> None: ...

    def instance_received(self, series: SeriesRef, sop_instance_uid: str, size: int) -> None: ...

    def series_finished(self, series: SeriesRef, error: str | None) -> None: ...


@dataclass(slots=True)
class RetrievalReport:
    """The outcome of retrieving one exam (F7), checked against its KOS."""

    exam: Exam
    directory: Path
    """Where the instances are: ``<directory>/<series_uid>/<sop_instance_uid>.dcm``."""
    received: dict[str, Path] = field(default_factory=dict)
    """SOP Instance UID → file, for every instance the KOS references that arrived."""
    bytes: int = 0
    seconds: float = 0.0
    missing: tuple[str, ...] = ()
    """Referenced by the KOS, never received."""
    unexpected: tuple[str, ...] = ()
    """Received but not referenced by the KOS (discarded, reported)."""
    mismatched: tuple[str, ...] = ()
    """Received with a study/series/SOP class other than the KOS says (discarded, reported)."""
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.errors)
