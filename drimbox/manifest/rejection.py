"""IOCM rejection notes (IHE RAD IOCM, PS3.3 A.35.4): a KOS whose title is a rejection reason.

A PACS (or a modality) that withdraws instances sends a Key Object Selection Document titled with a
code of CID 7031 "Rejection Reasons" whose CurrentRequestedProcedureEvidenceSequence lists the
rejected instances. The node reads it into a :class:`RejectionNote`; the publication side then
re-walks the study and republishes the manifest (RPLC) or deprecates it when nothing is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydicom import Dataset

from drimbox.manifest.errors import NotARejectionNote

__all__ = ["RejectedInstance", "RejectionNote", "RejectionReason", "is_rejection_note", "read_rejection_note"]

_KOS = "1.2.840.10008.5.1.4.1.1.88.59"


class RejectionReason(Enum):
    """CID 7031 Rejection Reasons (DCM codes; PS3.16)."""

    QUALITY = ("113001", "Rejected for Quality Reasons")
    PATIENT_SAFETY = ("113037", "Rejected for Patient Safety Reasons")
    INCORRECT_WORKLIST_ENTRY = ("113038", "Incorrect Modality Worklist Entry")
    RETENTION_EXPIRED = ("113039", "Data Retention Policy Expired")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def meaning(self) -> str:
        return self.value[1]

    @classmethod
    def from_code(cls, code: str) -> RejectionReason | None:
        """The reason with this DCM code value, or ``None``."""
        return next((reason for reason in cls if reason.code == code), None)


@dataclass(frozen=True, slots=True)
class RejectedInstance:
    """One instance a rejection note withdraws."""

    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class RejectionNote:
    """What an IOCM rejection note says.

    ``study_instance_uid`` is the note's own study (the one to re-walk); ``rejected`` lists every
    referenced instance, with its own study (a note may reference instances of several studies).
    """

    sop_instance_uid: str
    study_instance_uid: str
    reason: RejectionReason
    rejected: tuple[RejectedInstance, ...]
    patient_id: str = ""
    issuer_of_patient_id: str = ""

    def rejected_uids(self, study_instance_uid: str | None = None) -> frozenset[str]:
        """SOP Instance UIDs rejected (in one study when given)."""
        return frozenset(
            r.sop_instance_uid
            for r in self.rejected
            if study_instance_uid is None or r.study_instance_uid == study_instance_uid
        )

    def studies(self) -> frozenset[str]:
        """Every study with a rejected instance."""
        return frozenset(r.study_instance_uid for r in self.rejected)


def is_rejection_note(ds: Dataset) -> bool:
    """Whether ``ds`` is a KOS titled with a CID 7031 rejection reason (without raising)."""
    try:
        read_rejection_note(ds)
    except NotARejectionNote:
        return False
    return True


def read_rejection_note(ds: Dataset) -> RejectionNote:
    """Read an IOCM rejection note.

    Parameters
    ----------
    ds
        A dataset (e.g. received by the node's Storage SCP).

    Raises
    ------
    NotARejectionNote
        Not a KOS, not titled with a CID 7031 (DCM) code, or lists no instance.
    """
    if str(ds.get("SOPClassUID", "")) != _KOS:
        raise NotARejectionNote(f"SOP Class {ds.get('SOPClassUID')} is not Key Object Selection Document Storage")
    titles = ds.get("ConceptNameCodeSequence") or []
    title = titles[0] if titles else Dataset()
    scheme = str(title.get("CodingSchemeDesignator", ""))
    reason = RejectionReason.from_code(str(title.get("CodeValue", ""))) if scheme == "DCM" else None
    if reason is None:
        meaning = title.get("CodeMeaning", "no title")
        raise NotARejectionNote(
            f"KOS title ({title.get('CodeValue')}, {scheme}, {meaning!r}) is not a rejection reason"
        )
    rejected = tuple(
        RejectedInstance(
            study_instance_uid=str(study.StudyInstanceUID),
            series_instance_uid=str(series.SeriesInstanceUID),
            sop_class_uid=str(sop.ReferencedSOPClassUID),
            sop_instance_uid=str(sop.ReferencedSOPInstanceUID),
        )
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for sop in series.get("ReferencedSOPSequence", [])
    )
    if not rejected:
        raise NotARejectionNote("the rejection note references no instance")
    return RejectionNote(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        reason=reason,
        rejected=rejected,
        patient_id=str(ds.get("PatientID", "")),
        issuer_of_patient_id=str(ds.get("IssuerOfPatientID", "")),
    )
