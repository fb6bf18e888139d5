"""F6 against the running demo network: site B looks patients up in the registry (ITI-18/43) with
:class:`RegistryDirectory`, and what it finds is what site A published from its Orthanc."""

from __future__ import annotations

import copy
import io
import socket
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from lxml import etree

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.network import demo_oru
from drimbox.errors import RegistryUnavailable
from drimbox.hl7 import parse_report
from drimbox.manifest import encode_manifest
from drimbox.pacs import PacsClient
from drimbox.publish.dmp import patient_cx
from drimbox.publish.service import http_client, signer_of, vihf_profile, xds_endpoints
from drimbox.publish.submission import Manifest, SubmissionPolicy, build_submission, derived_uid
from drimbox.publish.vihf import VihfIssuer, VihfSubject
from drimbox.publish.xds.client import XdsClient
from drimbox.publish.xds.rim import submit_objects_request
from drimbox.retrieve.directory import EMERGENCY_PURPOSE, RegistryDirectory
from drimbox.retrieve.model import Actor, InstanceRef, PatientRecord, PatientTraits, RelatedDocument
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study
from drimbox.testdata.cda import CdaAuthor
from drimbox.testdata.identity import Patient
from tests.e2e.conftest import Net

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
HL7 = "urn:hl7-org:v3"
SITE_A_AUTHOR = CdaAuthor().organisation
"""The organisation of the demo's report CDAs, which site A's node puts in authorInstitution."""


def _traits(patient: Patient) -> PatientTraits:
    assert patient.ins is not None
    return PatientTraits(ins=patient.ins, ins_oid=patient.ins_oid, birth_name=patient.family,
                         first_given_name=patient.given.split()[0], sex="F" if patient.sex == "F" else "M",
                         birth_date=datetime.strptime(patient.birth_date, "%Y%m%d").date())


def _actor(net: Net, *, emergency: bool = False) -> Actor:
    return Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist",
                 display_name="Dr Test Radiologue", token=net.token(), emergency=emergency)


@pytest.fixture
def directory(net: Net, tmp_path: Path) -> Any:
    with RegistryDirectory.from_settings(net.settings("site-b", storage={"data_dir": str(tmp_path)})) as built:
        yield built


def _orthanc_series(net: Net, study_uid: str) -> dict[str, int]:
    """Series UID → instance count of one study in site A's Orthanc (REST)."""
    rest = net.network.orthanc("site-a").http_url
    with httpx.Client(timeout=20) as client:
        found = client.post(f"{rest}/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
        found.raise_for_status()
        (study_id,) = found.json()
        series = client.get(f"{rest}/studies/{study_id}/series")
        series.raise_for_status()
        return {s["MainDicomTags"]["SeriesInstanceUID"]: len(s["Instances"]) for s in series.json()}


def test_screening_mammography_current_and_prior(net: Net, directory: RegistryDirectory) -> None:
    record = directory.patient_record(_traits(net.screened_patient), _actor(net))
    assert record.hidden == 0 and record.problems == ()
    assert len(record.exams) == 2
    current, prior = record.exams
    assert current.performed is not None and prior.performed is not None
    assert current.performed > prior.performed  # newest first
    assert prior.performed.date() == date(2024, 3, 12)
    network_face = net.node("site-a")["network_dicomweb"]
    for exam in record.exams:
        assert exam.modalities == ("MG",)
        assert exam.source_site == SITE_A_AUTHOR  # authorInstitution of the entry (the CDA's organisation)
        assert exam.body_part  # the breast region event code
        assert exam.accession_number
        assert {s.series_uid: len(s.instances) for s in exam.series} == _orthanc_series(net, exam.study_uid)
        assert exam.instance_count == 4  # four screening views
        for series in exam.series:
            assert series.retrieve_url.startswith(f"{network_face}/studies/{exam.study_uid}/series/")
            assert series.host == "127.0.0.2"
        assert exam.confidentiality == ("N",)
        assert record.exam(exam.kos_uid) is exam and record.by_study(exam.study_uid) is exam


def test_report_published_with_the_kos(net: Net, directory: RegistryDirectory) -> None:
    actor = _actor(net)
    record = directory.patient_record(_traits(net.screened_patient), actor)
    for exam in record.exams:
        assert exam.report is not None, exam.study_uid
        assert exam.report.mime_type == "text/xml"
        cda = directory.document(exam.report, actor)
        assert cda.lstrip().startswith(b"<") and exam.study_uid.encode() in cda


def test_ct_of_the_other_patient(net: Net, directory: RegistryDirectory) -> None:
    record = directory.patient_record(_traits(net.ct_patient), _actor(net))
    (exam,) = record.exams
    assert exam.modalities == ("CT",)
    assert {s.series_uid: len(s.instances) for s in exam.series} == _orthanc_series(net, exam.study_uid)
    assert exam.source_site == SITE_A_AUTHOR  # authorInstitution of the entry (the CDA's organisation)


def test_unknown_ins_gives_an_empty_record(net: Net, directory: RegistryDirectory) -> None:
    stranger = make_patient(91, sex="M", with_ins=True)
    record = directory.patient_record(_traits(stranger), _actor(net))
    assert record == PatientRecord(traits=_traits(stranger), exams=())


def _closed_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def test_registry_down(net: Net, tmp_path: Path) -> None:
    dead = f"http://127.0.0.4:{_closed_port('127.0.0.4')}"
    settings = net.settings("site-b", storage={"data_dir": str(tmp_path)}, registry={"base_url": dead})
    with RegistryDirectory.from_settings(settings, timeout_s=5) as directory:
        with pytest.raises(RegistryUnavailable):
            directory.patient_record(_traits(net.screened_patient), _actor(net))


def test_registry_answering_garbage(net: Net, tmp_path: Path) -> None:
    garbage = f"{net.node('site-a')['base_url']}/healthz/"  # a live HTTP server that is no XDS registry
    settings = net.settings("site-b", storage={"data_dir": str(tmp_path)}, registry={"base_url": garbage})
    with RegistryDirectory.from_settings(settings, timeout_s=5) as directory:
        with pytest.raises(RegistryUnavailable):
            directory.patient_record(_traits(net.screened_patient), _actor(net))


def _attribute(assertion: etree._Element, name: str) -> etree._Element:
    (value,) = assertion.findall(f"{{{SAML}}}AttributeStatement/{{{SAML}}}Attribute[@Name='{name}']"
                                 f"/{{{SAML}}}AttributeValue")
    return value


def test_vihf_names_the_practitioner_and_emergency(net: Net, directory: RegistryDirectory) -> None:
    patient_id = _traits(net.screened_patient).xds_patient_id
    normal = directory.assertion(_actor(net), patient_id)
    urgent = directory.assertion(_actor(net, emergency=True), patient_id)
    for assertion in (normal, urgent):
        assert assertion.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID") == "810101010101"
        assert _attribute(assertion, "urn:oasis:names:tc:xspa:1.0:subject:subject-id").text == "Dr Test Radiologue"
        assert _attribute(assertion, "urn:oasis:names:tc:xacml:2.0:resource:resource-id").text == patient_id
        assert _attribute(assertion, "Identifiant_Structure").text == net.settings("site-b").publish.organisation_id
    purpose = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
    assert _attribute(normal, purpose).find(f"{{{HL7}}}PurposeOfUse").get("code") == "normal"
    coded = _attribute(urgent, purpose).find(f"{{{HL7}}}PurposeOfUse")
    assert coded is not None and coded.get("code") == EMERGENCY_PURPOSE == "bris_de_glace"
    assert coded.get("codeSystem") == "1.2.250.1.213.1.1.4.248"
    # The registry accepts the emergency assertion.
    assert len(directory.patient_record(_traits(net.screened_patient), _actor(net, emergency=True)).exams) == 2


def test_node_identity_and_deprecation_check(net: Net, directory: RegistryDirectory, tmp_path: Path) -> None:
    node = directory.assertion(None, _traits(net.ct_patient).xds_patient_id)
    structure = net.settings("site-b").publish.organisation_id
    assert node.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID") == f"{structure}/site-b"
    (exam,) = directory.patient_record(_traits(net.ct_patient), _actor(net)).exams
    assert directory.is_deprecated(exam.kos_uid) is False
    assert directory.is_deprecated(exam.kos_uid, _actor(net)) is False
    assert directory.is_deprecated("1.2.3.4.5.404") is True  # never listed: the node cannot vouch for it
    # The document → patient index survives the directory (a restart of the node).
    with RegistryDirectory.from_settings(net.settings("site-b", storage={"data_dir": str(tmp_path)})) as again:
        assert again.is_deprecated(exam.kos_uid) is False


def _send_report(net: Net, message: bytes) -> None:
    hl7 = net.node("site-a")["hl7"]
    with socket.create_connection((hl7["host"], hl7["port"]), timeout=30) as sock:
        sock.sendall(b"\x0b" + message + b"\x1c\r")
        answer = b""
        while b"\x1c\r" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "site A closed the MLLP connection without an ACK"
            answer += chunk
    assert b"MSA|AA" in answer, answer


def test_documents_masked_to_professionals_are_hidden(net: Net, directory: RegistryDirectory, tmp_path: Path) -> None:
    """Site A publishes two CTs of a new patient, one flagged MASQUE_PS by the RIS (real F1 → F3 path)."""
    patient = make_patient(77, sex="M", with_ins=True)
    visible = write_ct_study(tmp_path / "visible", patient, series=1, slices_per_series=3, rows=64, seed=71)
    masked = write_ct_study(tmp_path / "masked", patient, series=1, slices_per_series=2, rows=64, seed=72)
    site = net.network.sites[0]
    pacs = PacsClient(local=LocalAE(aet=site.node_aet, host=site.address, port=site.dimse_port),
                      remote=net.network.orthanc("site-a").remote_ae(), dimse=DimseSettings())
    try:
        pacs.store([*visible.files, *masked.files])
    finally:
        pacs.close()
    _send_report(net, demo_oru(visible, control_id="F6-VISIBLE"))
    flag = b"OBX|3|CE|MASQUE_PS^Masque aux professionnels^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F|\r"
    _send_report(net, demo_oru(masked, control_id="F6-MASKED") + flag)
    actor = _actor(net)
    deadline = time.monotonic() + 120
    record = directory.patient_record(_traits(patient), actor)
    while len(record.exams) + record.hidden < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        record = directory.patient_record(_traits(patient), actor)
    assert record.hidden == 1
    (exam,) = record.exams
    assert exam.study_uid == visible.study_instance_uid
    assert masked.study_instance_uid not in {e.study_uid for e in record.exams}
    assert "MASQUE_PS" not in exam.confidentiality


def _publish_kos_as_site_a(net: Net, study: GeneratedStudy, kos_uid: str, data: bytes) -> None:
    """ITI-41 of one KOS entry (any bytes) for ``study``, as site A's node would send it (its certificate,
    its VIHF, the DMP metadata of :func:`build_submission`), with the existing XDS client."""
    settings = net.settings("site-a")
    report = parse_report(demo_oru(study, control_id=f"F6-{kos_uid[-8:]}"))
    policy = replace(SubmissionPolicy.from_settings(settings.publish, settings.name), publish_cda=False)
    signer = signer_of(settings)
    endpoints = xds_endpoints(settings)
    assert signer is not None and endpoints is not None
    built = build_submission(report, Manifest(kos_uid, data, ()), policy, signer,
                             submission_uid=derived_uid("f6-test", kos_uid), now=datetime.now(UTC))
    vihf = VihfIssuer(vihf_profile(settings, settings.publish.organisation_id), signer)
    assertion = vihf.issue(VihfSubject(report.author, policy.author_role, policy.author_specialty,
                                       patient_id=patient_cx(report.patient),
                                       structure_id=report.organisation.id_nat_struct))
    with http_client(settings) as http:
        XdsClient(endpoints, http).provide_and_register(submit_objects_request(built.submission), built.documents,
                                                        assertion=assertion)


def _wait_for(directory: RegistryDirectory, traits: PatientTraits, actor: Actor, *, exams: int) -> PatientRecord:
    deadline = time.monotonic() + 120
    record = directory.patient_record(traits, actor)
    while len(record.exams) < exams and time.monotonic() < deadline:
        time.sleep(0.5)
        record = directory.patient_record(traits, actor)
    return record


def test_key_image_note_and_malformed_kos(net: Net, directory: RegistryDirectory, tmp_path: Path) -> None:
    """Site A publishes a CT (real F1 → F3 path), then a key-image note of it and a KOS that is not DICOM."""
    patient = make_patient(78, sex="F", with_ins=True)
    study = write_ct_study(tmp_path / "ct", patient, series=1, slices_per_series=3, rows=64, seed=81)
    site = net.network.sites[0]
    pacs = PacsClient(local=LocalAE(aet=site.node_aet, host=site.address, port=site.dimse_port),
                      remote=net.network.orthanc("site-a").remote_ae(), dimse=DimseSettings())
    try:
        pacs.store(list(study.files))
    finally:
        pacs.close()
    _send_report(net, demo_oru(study, control_id="F6-KEY"))
    actor = _actor(net)
    (exam,) = _wait_for(directory, _traits(patient), actor, exams=1).exams
    manifest = pydicom.dcmread(io.BytesIO(directory.document(
        RelatedDocument(exam.kos_uid, exam.repository_unique_id, "application/dicom", "KOS"), actor)))
    note = copy.deepcopy(manifest)
    note.SOPInstanceUID = derived_uid("f6-key-note", exam.kos_uid)
    note.ConceptNameCodeSequence[0].CodeValue = "113000"
    note.ConceptNameCodeSequence[0].CodeMeaning = "Of Interest"
    chosen = note.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    del chosen[1:]
    key = InstanceRef(str(chosen[0].ReferencedSOPClassUID), str(chosen[0].ReferencedSOPInstanceUID))
    _publish_kos_as_site_a(net, study, note.SOPInstanceUID, encode_manifest(note))
    garbage_uid = derived_uid("f6-garbage", exam.kos_uid)
    _publish_kos_as_site_a(net, study, garbage_uid, b"<html><body>502 Bad Gateway</body></html>")
    record = directory.patient_record(_traits(patient), actor)
    (exam,) = record.exams  # the note adds key images to the exam; the garbage is no exam
    assert exam.key_images == (key,)
    assert exam.series_count == 1 and exam.instance_count == 3
    (problem,) = record.problems
    assert garbage_uid in problem and "not a DICOM file" in problem
