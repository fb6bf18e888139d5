"""KOS built from a real PACS walk (F2 + F3): Orthanc holds the exam of an ANS report.

The images are generated under the report's Study UID / accession number with the ANS test patient
(PatientID = the local IPP, the INS in OtherPatientIDsSequence, as a French PACS holds them); the
manifest must reference exactly what the PACS has, under the INS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pydicom
import pytest
from kos_fixtures import ROOT, ans_report, dciodvfy

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.manifest import IncompleteEvidence, ManifestBuilder
from drimbox.pacs import PacsClient
from drimbox.testdata import ANS_PATIENT, write_exam_study

DIMSE = DimseSettings(acse_timeout_s=3, network_timeout_s=30, connect_timeout_s=2, pool_size=1)


@pytest.fixture()
def orthanc_client(node_ae: LocalAE, orthanc_a_clean: OrthancProcess) -> Iterator[PacsClient]:
    with PacsClient(node_ae, orthanc_a_clean.remote_ae(timeout_s=10), DIMSE) as client:
        yield client


@pytest.mark.parametrize(("sample", "modality"), [("C-ORU", "MG"), ("G1_MAJ-MDM", "CT")])
def test_kos_of_an_orthanc_study(
    tmp_path: Path,
    orthanc_a_clean: OrthancProcess,
    orthanc_client: PacsClient,
    sample: str,
    modality: Literal["MG", "CT"],
) -> None:
    report = ans_report(sample)
    study = write_exam_study(
        tmp_path / "exam",
        study_uid=report.study_instance_uid,
        accession=report.accession_number,
        patient=ANS_PATIENT,
        accession_issuer=report.accession_issuer,
        modality=modality,
    )
    orthanc_a_clean.upload(study.files)

    walk = orthanc_client.walk_study(report.study_instance_uid)
    built = ManifestBuilder(ROOT)(walk, report, 0)
    kos = built.dataset

    (evidence,) = kos.CurrentRequestedProcedureEvidenceSequence
    referenced = {
        r.ReferencedSOPInstanceUID for s in evidence.ReferencedSeriesSequence for r in s.ReferencedSOPSequence
    }
    assert referenced == set(study.sop_instance_uids()) == walk.sop_instance_uids()
    assert [s.SeriesInstanceUID for s in evidence.ReferencedSeriesSequence] == list(study.series_uids())
    for series in evidence.ReferencedSeriesSequence:
        assert series.RetrieveURL == f"{ROOT}/studies/{report.study_instance_uid}/series/{series.SeriesInstanceUID}"
    items = [i for i in kos.ContentSequence if "ReferencedSOPSequence" in i]
    assert len(items) == len(referenced) and {i.ValueType for i in items} == {"IMAGE"}
    # the PACS knows the patient by the local IPP; the manifest by the INS
    assert walk.identifier.PatientID == "IPP101"
    assert (kos.PatientID, kos.IssuerOfPatientID) == ("279035121518989", "ASIP-SANTE-INS-NIR")
    assert kos.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == (
        "1.2.250.1.213.1.4.10"
    )
    assert "IPP101" not in str(kos)

    path = tmp_path / "kos.dcm"
    path.write_bytes(built.data)
    verdict = dciodvfy(path)
    assert verdict.errors == () and verdict.returncode == 0, verdict.output

    # a real PACS takes the manifest as it is (the node may store it back, DESIGN F4)
    orthanc_a_clean.upload([path])
    assert orthanc_client.walk_study(report.study_instance_uid).instance_count == len(referenced) + 1
    assert pydicom.dcmread(path).SOPInstanceUID == built.sop_instance_uid


def test_strict_pacs_without_sop_classes(tmp_path: Path, node_ae: LocalAE, dcmqrscp_clean: DcmqrscpProcess) -> None:
    """dcmqrscp returns no SOP Class UID at IMAGE level: the builder says which instances lack it."""
    report = ans_report("C-MDM")
    study = write_exam_study(
        tmp_path / "exam", study_uid=report.study_instance_uid, accession=report.accession_number, patient=ANS_PATIENT
    )
    dcmqrscp_clean.load(study.files)
    with PacsClient(node_ae, dcmqrscp_clean.remote_ae(timeout_s=10), DIMSE) as client:
        walk = client.walk_study(report.study_instance_uid)
    assert not walk.sop_class_uids()
    with pytest.raises(IncompleteEvidence) as caught:
        ManifestBuilder(ROOT)(walk, report, 0)
    assert set(caught.value.sop_instance_uids) == set(study.sop_instance_uids())
