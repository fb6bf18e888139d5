"""IOCM rejection notes (KOS titled with a CID 7031 reason) read into RejectionNote."""

from __future__ import annotations

import pytest
from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from kos_fixtures import MG, ROOT, ans_report, walk
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from drimbox.manifest import (
    NotARejectionNote,
    RejectionReason,
    build_manifest,
    is_rejection_note,
    read_rejection_note,
    series_retrieve_url,
)

STUDY = "1.2.250.1.213.4.5.2.1.103"


def _instances(study: str, series: str, count: int) -> list[Dataset]:
    out = []
    for number in range(1, count + 1):
        ds = Dataset()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID, ds.SOPInstanceUID = MG, f"{series}.{number}"
        ds.Rows = ds.Columns = 8
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "IPP101", "PAT-TROIS^DOMINIQUE", "", "F"
        ds.AccessionNumber, ds.StudyID, ds.StudyDate, ds.StudyTime = "ACN103", "1", "20250114", "091500"
        out.append(ds)
    return out


def _note(title: Code, evidence: list[Dataset]) -> KeyObjectSelectionDocument:
    content = KeyObjectSelection(document_title=title, referenced_objects=evidence)
    return KeyObjectSelectionDocument(
        evidence=evidence,
        content=content,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid="1.2.3.99.1",
        instance_number=1,
        manufacturer="PACS",
    )


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        (codes.DCM.RejectedForQualityReasons, RejectionReason.QUALITY),
        (codes.DCM.RejectedForPatientSafetyReasons, RejectionReason.PATIENT_SAFETY),
        (codes.DCM.IncorrectModalityWorklistEntry, RejectionReason.INCORRECT_WORKLIST_ENTRY),
        (codes.DCM.DataRetentionPolicyExpired, RejectionReason.RETENTION_EXPIRED),
    ],
)
def test_rejection_reasons(title: Code, reason: RejectionReason) -> None:
    note = read_rejection_note(_note(title, _instances(STUDY, f"{STUDY}.1", 2)))
    assert note.reason is reason
    assert (reason.code, reason.meaning) == (title.value, title.meaning)
    assert note.study_instance_uid == STUDY
    assert note.sop_instance_uid == "1.2.3.99.1"
    assert note.rejected_uids() == {f"{STUDY}.1.1", f"{STUDY}.1.2"}
    assert {r.series_instance_uid for r in note.rejected} == {f"{STUDY}.1"}
    assert {r.sop_class_uid for r in note.rejected} == {MG}
    assert note.patient_id == "IPP101"
    assert is_rejection_note(_note(title, _instances(STUDY, f"{STUDY}.1", 1)))


def test_rejection_of_several_series() -> None:
    evidence = _instances(STUDY, f"{STUDY}.1", 2) + _instances(STUDY, f"{STUDY}.2", 1)
    note = read_rejection_note(_note(codes.DCM.RejectedForQualityReasons, evidence))
    assert len(note.rejected) == 3 and note.studies() == {STUDY}
    assert note.rejected_uids(STUDY) == note.rejected_uids() and not note.rejected_uids("1.2.3")


def test_a_manifest_is_not_a_rejection_note() -> None:
    report = ans_report("C-ORU")
    manifest = build_manifest(walk(report.study_instance_uid), report, series_retrieve_url(ROOT))
    assert not is_rejection_note(manifest)
    with pytest.raises(NotARejectionNote, match="113030"):
        read_rejection_note(manifest)


def test_other_objects_are_not_rejection_notes() -> None:
    image = _instances(STUDY, f"{STUDY}.1", 1)[0]
    with pytest.raises(NotARejectionNote, match="Key Object Selection"):
        read_rejection_note(image)
    note = _note(codes.DCM.RejectedForQualityReasons, _instances(STUDY, f"{STUDY}.1", 1))
    note.ConceptNameCodeSequence[0].CodingSchemeDesignator = "99LOCAL"
    assert not is_rejection_note(note)
    note = _note(codes.DCM.RejectedForQualityReasons, _instances(STUDY, f"{STUDY}.1", 1))
    del note.CurrentRequestedProcedureEvidenceSequence
    with pytest.raises(NotARejectionNote, match="no instance"):
        read_rejection_note(note)
