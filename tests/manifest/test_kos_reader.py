"""The consumer's KOS reader on what the node's own manifest builder makes and on the ANS KOS dump."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kos_fixtures import KOS_DUMP, MG, ROOT, ans_report, walk
from pydicom import Dataset
from pydicom.sequence import Sequence

from drimbox.manifest import build_manifest, encode_manifest, series_retrieve_url
from drimbox.retrieve.kos_reader import MalformedKos, modality_of_sop_class, read_kos

REPORT = ans_report("C-ORU")
STUDY = walk(REPORT.study_instance_uid)


def _built() -> Dataset:
    return build_manifest(STUDY, REPORT, series_retrieve_url(ROOT))


def test_manifest_built_by_the_node() -> None:
    kos = _built()
    content = read_kos(encode_manifest(kos))
    assert content.is_manifest and content.title_code == "113030"
    assert content.sop_instance_uid == kos.SOPInstanceUID
    assert content.study_uid == REPORT.study_instance_uid
    assert content.accession_number == REPORT.accession_number
    assert [s.series_uid for s in content.series] == [s.series_instance_uid for s in STUDY.series]
    assert [len(s.instances) for s in content.series] == [4, 4]
    mg = content.series[0]
    assert mg.retrieve_url == f"{ROOT}/studies/{REPORT.study_instance_uid}/series/{mg.series_uid}"
    assert mg.host == "db.site-a.test"
    assert {i.sop_class_uid for i in mg.instances} == {MG}
    assert [i.sop_instance_uid for i in mg.instances] == [f"{REPORT.study_instance_uid}.1.{n}" for n in range(1, 5)]
    assert mg.modality == "MG" and content.series[1].modality is None  # GSPS, ECG, PDF, SR mixed
    assert content.modalities == ("MG",)
    assert content.performed is not None and content.performed.tzinfo is not None


def test_dataset_and_bytes_read_alike() -> None:
    kos = _built()
    assert read_kos(kos) == read_kos(encode_manifest(kos))


def _ans_kos(tmp_path: Path) -> bytes:
    """The ANS dump (DCMTK's XML of a DICOM file) turned back into DICOM with DCMTK's own xml2dcm."""
    target = tmp_path / "ans-kos.dcm"
    subprocess.run(["xml2dcm", str(KOS_DUMP), str(target)], check=True, capture_output=True, timeout=60)
    return target.read_bytes()


def test_ans_kos_dump(tmp_path: Path) -> None:
    content = read_kos(_ans_kos(tmp_path))
    assert content.is_manifest and content.title_meaning == "MANIFEST"
    assert content.sop_instance_uid == "1.2.250.1.213.4.5.2.3.101.259.31"
    assert content.study_uid == "1.2.250.1.213.4.5.2.1.101"
    assert content.accession_number == "ACN101"  # from ReferencedRequestSequence; the top-level one is empty
    assert content.study_description == "Examen A"
    assert content.institution == "Centre de radiologie Ambroise"
    # StudyDate 20220822, StudyTime 083117.658, TimezoneOffsetFromUTC +0200 → 06:31:17 UTC
    assert content.performed == datetime(2022, 8, 22, 6, 31, 17, tzinfo=UTC)
    assert [s.series_uid.rsplit(".", 1)[1] for s in content.series] == ["201", "202", "299"]
    assert all(s.retrieve_url.startswith("http://localhost:4200/api/source/studies/1.2.250.1.213.4.5.2.1.101/series/")
               for s in content.series)
    assert [len(s.instances) for s in content.series] == [1, 1, 1]
    assert content.series[2].instances[0].sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.59"  # its key-object note
    assert content.modalities == ("CT",)


def test_key_image_note_needs_no_retrieve_url() -> None:
    kos = _built()
    kos.ConceptNameCodeSequence[0].CodeValue = "113000"
    kos.ConceptNameCodeSequence[0].CodeMeaning = "Of Interest"
    for series in kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence:
        del series.RetrieveURL
    content = read_kos(kos)
    assert not content.is_manifest and content.title_meaning == "Of Interest"
    assert len(content.instances) == 8


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda kos: setattr(kos, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.22"), "not Key Object Selection"),
        (lambda kos: delattr(kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[1],
                             "RetrieveURL"), "no usable RetrieveURL"),
        (lambda kos: setattr(kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0],
                             "RetrieveURL", "file:///etc/passwd"), "no usable RetrieveURL"),
        (lambda kos: setattr(kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0],
                             "ReferencedSOPSequence", Sequence()), "references no instance"),
        (lambda kos: setattr(kos, "CurrentRequestedProcedureEvidenceSequence", Sequence()), "references no series"),
    ],
)
def test_malformed_manifests_are_refused(damage: object, reason: str) -> None:
    kos = _built()
    damage(kos)  # type: ignore[operator]
    with pytest.raises(MalformedKos, match=reason):
        read_kos(encode_manifest(kos))


def test_not_dicom() -> None:
    with pytest.raises(MalformedKos, match="not a DICOM file"):
        read_kos(b"<html>502 Bad Gateway</html>")
    with pytest.raises(MalformedKos):
        read_kos(encode_manifest(_built())[:300])


def test_other_study_evidence_left_out() -> None:
    kos = _built()
    other = Dataset()
    other.StudyInstanceUID = "1.2.3.999"
    other.ReferencedSeriesSequence = Sequence(
        [kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]])
    kos.CurrentRequestedProcedureEvidenceSequence.append(other)
    content = read_kos(kos)
    assert len(content.series) == 2 and content.study_uid == REPORT.study_instance_uid


def test_modality_of_sop_class() -> None:
    assert modality_of_sop_class(MG) == "MG"
    assert modality_of_sop_class("1.2.840.10008.5.1.4.1.1.13.1.3") == "MG"
    assert modality_of_sop_class("1.2.840.10008.5.1.4.1.1.2") == "CT"
    assert modality_of_sop_class("1.2.3") is None
