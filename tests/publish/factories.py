"""Reports for publication tests (synthetic identities, never patient data)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from drimbox.reports import (
    IdentityStatus,
    ImagingReport,
    Organisation,
    PatientIdentity,
    Practitioner,
    ReportAction,
    Visibility,
)

INS_TEST_OID = "1.2.250.1.213.1.4.10"


def make_report(
    study_uid: str = "1.2.826.0.1.3680043.10.1.1",
    accession: str = "ACC0001",
    *,
    version: int = 1,
    action: ReportAction = ReportAction.PUBLISH,
    ins: str | None = "279035121518989",
    status: IdentityStatus = IdentityStatus.QUALIFIED,
    visibility: Visibility | None = None,
    control_id: str = "MSG1",
) -> ImagingReport:
    """A validated imaging report for a test exam (qualified INS from the ANS test range)."""
    return ImagingReport(
        action=action,
        message_control_id=control_id,
        patient=PatientIdentity(
            ipp="IPP101", ipp_authority="AUT-AFFECTATION", ipp_authority_oid="1.2.250.1.213.4.5.2.4",
            birth_family_name="PAT-TROIS", given_names=("DOMINIQUE",), birth_date="19790328", sex="F",
            status=status, ins=ins if status is IdentityStatus.QUALIFIED else None,
            ins_oid=INS_TEST_OID if status is IdentityStatus.QUALIFIED else None,
        ),
        study_instance_uid=study_uid,
        accession_number=accession,
        set_id="1.2.250.1.213.4.5.4.4072",
        version_number=version,
        document_id=f"1.2.250.1.213.4.5.4.407.{version}",
        title="CR d'imagerie médicale",
        effective_time=datetime(2021, 4, 9, 14, 30, tzinfo=UTC),
        author=Practitioner("801234564895", "Eric", "Thomas", "DR"),
        organisation=Organisation("Centre de radiologie Ambroise", "1750803447"),
        legal_authenticator=Practitioner("801234564895", "Eric", "Thomas", "DR"),
        visibility=visibility or Visibility(),
        service_start=datetime(2021, 4, 9, 8, 15, tzinfo=UTC),
        service_stop=datetime(2021, 4, 9, 8, 40, tzinfo=UTC),
        accession_issuer="1.2.250.1.213.4.5.2.9",
        order_id="09011600123",
        cda=b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>",
    )


def with_version(report: ImagingReport, version: int) -> ImagingReport:
    """The same report as another version (an update)."""
    control_id = f"{report.message_control_id}-v{version}"
    return dataclasses.replace(report, version_number=version, message_control_id=control_id)


def report_for(study_uid: str, accession: str, patient: object, *, version: int = 1,
               action: ReportAction = ReportAction.PUBLISH, control_id: str = "MSG1") -> ImagingReport:
    """A report for a generated study's patient (``drimbox.testdata.Patient``)."""
    from drimbox.testdata import Patient

    assert isinstance(patient, Patient)
    base = make_report(study_uid, accession, version=version, action=action, ins=patient.ins, control_id=control_id)
    identity = dataclasses.replace(base.patient, ipp=patient.ipp, birth_family_name=patient.family,
                                   given_names=(patient.given,), birth_date=patient.birth_date,
                                   sex=patient.sex if patient.sex != "O" else "U", ins_oid=patient.ins_oid)
    return dataclasses.replace(base, patient=identity)
