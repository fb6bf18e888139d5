"""Every ANS HL7v2 sample (ORU and MDM of exams C, E, F, G1, G1_MAJ, G2, I) parses as it should.

The samples' OBX-5 CDA is elided in drim-m-data; each test puts a generated CI-SIS report in its
place (same document id as TXA-12, version 2 with RPLC for the update, double-encoded UTF-8 where the
original was) and checks every field the node takes from PID, PRT, OBX and the CDA.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7_samples import HL7_DIR, SAMPLES, cr_message, report_spec, sample_message

from drimbox.hl7 import parse_report
from drimbox.reports import IdentityStatus, ReportAction


def test_the_samples_are_there() -> None:
    missing = [e.path for e in SAMPLES.values() if not (HL7_DIR / e.path).is_file()]
    assert not missing, f"drim-m-data samples not found under {HL7_DIR}: {missing}"
    assert len(list(HL7_DIR.glob("*/*.hl7"))) == len(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_patient(name: str) -> None:
    patient = parse_report(sample_message(name)).patient
    assert patient.status is IdentityStatus.QUALIFIED
    assert (patient.ins, patient.ins_oid) == ("279035121518989", "1.2.250.1.213.1.4.10")
    assert (patient.ipp, patient.ipp_authority, patient.ipp_authority_oid) == (
        "IPP101",
        "AUT-AFFECTATION",
        "1.2.250.1.213.4.5.2.4",
    )
    assert patient.birth_family_name == "PAT-TROIS"
    assert patient.given_names == ("DOMINIQUE",)
    assert patient.used_family_name == "PAT-TROIS"
    assert patient.used_given_name is None
    assert (patient.birth_date, patient.sex) == ("19790328", "F")
    assert patient.birth_place_code == SAMPLES[name].birth_place


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_report_and_exam(name: str) -> None:
    spec = report_spec(name)
    report = parse_report(sample_message(name, control_id=f"CTRL-{name}"))
    assert report.message_control_id == f"CTRL-{name}"
    assert report.message_type == SAMPLES[name].message_type
    assert report.study_instance_uid == spec.study_instance_uid
    assert (report.accession_number, report.accession_issuer) == (spec.accession_number, "1.2.250.1.213.4.5.2.5")
    assert (report.order_id, report.order_issuer) == (spec.placer_order, "1.2.250.1.213.4.5.2.6")
    assert (report.set_id, report.version_number) == (spec.set_id, spec.version_number)
    assert report.document_id == spec.document_id
    assert report.title == "CR d’imagerie médicale"  # repaired where the sample double-encodes UTF-8
    assert report.effective_time == datetime(2025, 1, 14, 9, 30, tzinfo=UTC)
    assert report.service_start == datetime(2025, 1, 14, 8, 30, tzinfo=UTC)
    assert report.service_stop == datetime(2025, 1, 14, 8, 50, tzinfo=UTC)
    assert report.cda.startswith(b"<?xml") and b"ClinicalDocument" in report.cda


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_professionals_and_organisations(name: str) -> None:
    report = parse_report(sample_message(name))
    assert report.author.id_nat_ps == "801234560801"
    assert report.author.rpps == "01234560801"
    assert (report.author.family_name, report.author.given_name) == ("BIDEAULT", "Jacques")
    assert report.legal_authenticator == report.author
    assert report.organisation.id_nat_struct == "101235555"
    assert report.custodian == report.organisation
    assert report.sender is not None and report.sender.id_nat_ps == "801234564895"
    assert report.sender_organisation is not None
    assert (report.sender_organisation.id_nat_struct, report.sender_organisation.name) == (
        SAMPLES[name].sender_struct,
        SAMPLES[name].sender_name,
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_visibility_flags(name: str) -> None:
    visibility = parse_report(sample_message(name)).visibility
    expected = SAMPLES[name]
    assert visibility.invisible_to_patient is expected.invisible_to_patient
    assert visibility.invisible_to_legal_representatives is expected.invisible_to_legal
    assert visibility.confidentiality_modified is expected.confidentiality_modified
    assert visibility.to_dmp is True
    assert not any(
        (
            visibility.masked_to_professionals,
            visibility.secret_connection,
            visibility.to_mssante_professionals,
            visibility.to_mssante_patient,
            visibility.ack_reception,
            visibility.ack_reading,
        )
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_action(name: str) -> None:
    report = parse_report(sample_message(name))
    expected = ReportAction.WITHDRAW if SAMPLES[name].withdraw else ReportAction.PUBLISH
    assert report.action is expected


@pytest.mark.parametrize("name", ["G1_MAJ-MDM", "G1_MAJ-ORU"])
def test_update_is_recognised_by_version(name: str) -> None:
    """The update ORU says ORC NW / OBX-11 F like a new report: only the CDA tells it apart."""
    first = parse_report(sample_message(name.replace("_MAJ", "")))
    update = parse_report(sample_message(name))
    assert update.action is ReportAction.PUBLISH
    assert update.study_instance_uid == first.study_instance_uid
    assert update.set_id == first.set_id
    assert update.version_number == first.version_number + 1
    assert update.parent_document_id == first.document_id


def test_mdm_update_names_its_parent_in_txa_and_cda() -> None:
    report = parse_report(sample_message("G1_MAJ-MDM"))
    assert (report.document_id, report.parent_document_id) == ("1.2.250.1.213.4.5.4.4072", "1.2.250.1.213.4.5.4.407")


@pytest.mark.parametrize("name", ["C-ORU", "G1_MAJ-MDM", "I-ORU"])
def test_cr_separated_segments_parse_the_same(name: str) -> None:
    assert parse_report(cr_message(name)) == parse_report(sample_message(name))


def test_codes_for_the_registry() -> None:
    report = parse_report(sample_message("C-ORU"))
    assert report.language_code == "fr-FR"
    assert report.confidentiality_code is not None and report.confidentiality_code.code == "N"
    assert report.document_code is not None and report.document_code.code == "18748-4"
    assert [c.code for c in report.exam_codes] == ["24606-6", "MG", "76752008"]
    assert report.practice_setting is not None and report.practice_setting.code == "AMBULATOIRE"
    assert report.healthcare_facility_type is not None and report.healthcare_facility_type.code == "SA08"
