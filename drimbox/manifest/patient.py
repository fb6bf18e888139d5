"""The patient of a manifest: the qualified INS in place of the PACS's local identifier (DESIGN §3).

Patient module (PS3.3 C.7.1.1): PatientID = INS, IssuerOfPatientID ``ASIP-SANTE-INS-NIR``,
IssuerOfPatientIDQualifiersSequence = the INS namespace OID (UniversalEntityIDType ``ISO``), and the
same triple in OtherPatientIDsSequence, as the ANS KOS does. Name, birth date and sex come from the
RIS's qualified identity (the INS traits), not from the PACS; the used name goes to
OtherPatientNames and the birth place code to PatientComments, as in the ANS KOS.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.sequence import Sequence

from drimbox.manifest.errors import IdentityNotQualified
from drimbox.reports import IdentityStatus, PatientIdentity

__all__ = ["INS_ISSUER", "apply_patient", "patient_name", "require_ins"]

INS_ISSUER = "ASIP-SANTE-INS-NIR"
"""IssuerOfPatientID (0010,0021) of the INS in DRIM-M manifests."""

_DICOM_SEX = {"M": "M", "F": "F"}


def _qualifier(oid: str) -> Dataset:
    item = Dataset()
    item.UniversalEntityID = oid
    item.UniversalEntityIDType = "ISO"
    return item


def patient_name(patient: PatientIdentity) -> str:
    """PatientName: birth family name and first birth given name (the INS reference traits)."""
    return f"{patient.birth_family_name}^{patient.first_given_name}".rstrip("^")


def require_ins(patient: PatientIdentity) -> tuple[str, str]:
    """The INS and its OID, or :class:`IdentityNotQualified`."""
    if patient.status is not IdentityStatus.QUALIFIED or not patient.ins or not patient.ins_oid:
        raise IdentityNotQualified(
            f"the patient identity is not qualified (PID-32 {patient.status.value or 'empty'}, "
            f"INS {'present' if patient.ins else 'absent'}): a manifest carries the INS, which may not be used"
        )
    return patient.ins, patient.ins_oid


def apply_patient(ds: Dataset, patient: PatientIdentity) -> None:
    """Set the Patient module of ``ds`` from the qualified identity (overwriting what was there).

    Raises
    ------
    IdentityNotQualified
        The identity is not qualified or has no INS.
    """
    ins, oid = require_ins(patient)
    ds.PatientName = patient_name(patient)
    ds.PatientID = ins
    ds.IssuerOfPatientID = INS_ISSUER
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([_qualifier(oid)])
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = _DICOM_SEX.get(patient.sex, "")  # DICOM has no "unknown" value: type 2, empty
    other = Dataset()
    other.PatientID = ins
    other.IssuerOfPatientID = INS_ISSUER
    other.TypeOfPatientID = "TEXT"
    other.IssuerOfPatientIDQualifiersSequence = Sequence([_qualifier(oid)])
    ds.OtherPatientIDsSequence = Sequence([other])
    # The used name (nom utilisé, PID-5 type D) as OtherPatientNames: the ANS cross-validator
    # checks it against the CDA's used name (qualifier CL) when present.
    if patient.used_family_name:
        ds.OtherPatientNames = f"{patient.used_family_name}^{patient.used_given_name or patient.first_given_name}"
    elif "OtherPatientNames" in ds:
        del ds.OtherPatientNames
    # The INSEE code of the birth place is an INS trait the consumer may check; the ANS KOS carries
    # it in PatientComments (there is no DICOM attribute for it).
    if patient.birth_place_code:
        ds.PatientComments = patient.birth_place_code
