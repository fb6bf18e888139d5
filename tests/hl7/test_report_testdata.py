"""The report test data: generated CDA, its PDF body, the filled ANS samples, re-keyed images."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pydicom
from hl7_samples import HL7_DIR, SAMPLES
from lxml import etree

from drimbox.testdata import (
    ANS_PATIENT,
    ReportSpec,
    fill_sample,
    make_report_cda,
    minimal_pdf,
    sample_facts,
    write_exam_study,
)

V3 = {"v3": "urn:hl7-org:v3", "ps": "urn:dicom-org:ps3-20"}


def test_pdf_cross_reference_table_points_at_its_objects() -> None:
    pdf = minimal_pdf(["Conclusion : rien à signaler (ACR 1)"])
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[xref:].startswith(b"xref\n0 6\n")
    offsets = [int(line[:10]) for line in pdf[xref:].split(b"\n")[3:8]]
    for number, offset in enumerate(offsets, start=1):
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())
    assert "à".encode("cp1252") in pdf


def test_cda_header_layout() -> None:
    spec = ReportSpec(
        patient=ANS_PATIENT,
        study_instance_uid="1.2.3.4",
        accession_number="ACN1",
        version_number=2,
        parent_document_id="1.2.250.1.213.4.5.4.1",
    )
    root = etree.fromstring(make_report_cda(spec))
    assert root.xpath("string(v3:documentationOf/v3:serviceEvent/v3:id/@root)", namespaces=V3) == "1.2.3.4"
    assert root.xpath("string(v3:inFulfillmentOf/v3:order/ps:accessionNumber/@extension)", namespaces=V3) == "ACN1"
    assert root.xpath("string(v3:versionNumber/@value)", namespaces=V3) == "2"
    assert (
        root.xpath("string(v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id/@root)", namespaces=V3)
        == "1.2.250.1.213.4.5.4.1"
    )
    assert root.xpath("v3:recordTarget/v3:patientRole/v3:id/@extension", namespaces=V3) == ["279035121518989", "IPP101"]
    body = root.xpath("string(v3:component/v3:nonXMLBody/v3:text)", namespaces=V3)
    assert base64.b64decode(body).startswith(b"%PDF-")


def test_double_encoded_cda_is_still_well_formed_xml() -> None:
    spec = ReportSpec(patient=ANS_PATIENT, study_instance_uid="1.2.3.4", accession_number="ACN1")
    xml = make_report_cda(spec, double_encoded=True)
    title = etree.fromstring(xml).xpath("string(v3:title)", namespaces=V3)
    assert title == "CR dâ€™imagerie mÃ©dicale"


def test_filled_sample_keeps_every_other_byte() -> None:
    sample = (HL7_DIR / SAMPLES["G1_MAJ-MDM"].path).read_bytes()
    filled = fill_sample(sample, b"<x/>", control_id="C1")
    assert base64.b64encode(b"<x/>") in filled
    assert b"{{" not in filled and b"ELIDED" not in filled
    assert filled.count(b"\r\n") == sample.count(b"\r\n")
    assert filled.startswith(b"MSH|^~\\&|RIS_TEST|CENTRE_AMBROISE|DRIMBOX|CENTRE_AMBROISE|20250114103500+0100||MDM^T10")
    assert b"|MDM^T10^MDM_T02|C1|P|2.6|" in filled
    unchanged = re.sub(rb"\|\^text\^XML\^Base64\^[^|]*\|", b"", filled.split(b"\r\n", 1)[1])
    assert unchanged == re.sub(rb"\|\^text\^XML\^Base64\^[^|]*\|", b"", sample.split(b"\r\n", 1)[1])
    assert sample_facts(sample).parent_document_id == "1.2.250.1.213.4.5.4.407"


def test_exam_study_has_the_chosen_keys(tmp_path: Path) -> None:
    study = write_exam_study(
        tmp_path / "a",
        study_uid="1.2.250.1.213.4.5.2.1.103",
        accession="ACN103",
        patient=ANS_PATIENT,
        accession_issuer="1.2.250.1.213.4.5.2.5",
    )
    assert len(study.files) == 4
    assert (study.study_instance_uid, study.accession_number) == ("1.2.250.1.213.4.5.2.1.103", "ACN103")
    for path, instance in zip(study.files, study.instances, strict=True):
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == "1.2.250.1.213.4.5.2.1.103"
        assert ds.AccessionNumber == "ACN103"
        assert ds.IssuerOfAccessionNumberSequence[0].UniversalEntityID == "1.2.250.1.213.4.5.2.5"
        assert ds.SOPInstanceUID == instance.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.SeriesInstanceUID == instance.series_instance_uid
        assert ds.OtherPatientIDsSequence[0].PatientID == "279035121518989"
    again = write_exam_study(
        tmp_path / "b", study_uid="1.2.250.1.213.4.5.2.1.103", accession="ACN103", patient=ANS_PATIENT
    )
    assert again.sop_instance_uids() == study.sop_instance_uids()
    other = write_exam_study(
        tmp_path / "c", study_uid="1.2.250.1.213.4.5.2.1.105", accession="ACN105", patient=ANS_PATIENT, modality="CT"
    )
    assert len(other.series_uids()) == 2
    assert not set(other.sop_instance_uids()) & set(study.sop_instance_uids())
