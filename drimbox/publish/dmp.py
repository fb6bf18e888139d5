"""DMP value formats (ANS CI-SIS): identifiers, persons, organisations, visibility codes, times.

The HL7 v2 data types of XDS metadata as the DMP fills them (DESIGN §3), checked against the ANS
validator samples (``Validateur_XDS/XDS.xml``, ``Cross-validateur/.../XDS.xml``):

- patient: ``<INS>^^^&<OID>&ISO^NH``; local id: ``<IPP>^^^&<OID>&ISO^PI``;
- person (XCN): ``<IdNatPS>^<family>^<given>^^^<prefix>^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS`` —
  component 10 ``D`` (name type), 13 ``IDNPS`` (identifier type), as in the samples;
- organisation (XON): ``<name>^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^<IdNatStruct>``;
- reference ids (CXi, ITI TF-3 4.2.3.2.23): accession and order with their issuer, Study Instance UID
  without one (a UID is globally unique).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from drimbox.publish.xds.rim import Code
from drimbox.reports import Organisation, PatientIdentity, Practitioner, Visibility

__all__ = [
    "CONFIDENTIALITY_NORMAL",
    "ID_NAT_PS_OID",
    "ID_NAT_STRUCT_OID",
    "VISIBILITY_SCHEME",
    "accession_reference",
    "confidentiality_codes",
    "dicom_local_datetime",
    "order_reference",
    "organisation_xon",
    "patient_cx",
    "person_xcn",
    "source_patient_cx",
    "source_patient_info",
    "study_reference",
]

ID_NAT_PS_OID = "1.2.250.1.71.4.2.1"
ID_NAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
VISIBILITY_SCHEME = "1.2.250.1.213.1.1.4.13"
CONFIDENTIALITY_NORMAL = Code("N", "2.16.840.1.113883.5.25", "Normal")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def _escape(value: str) -> str:
    """HL7 v2 escaping of the delimiters ``^ & ~ | \\`` inside a component."""
    out = value.replace("\\", "\\E\\")
    for char, esc in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(char, esc)
    return out


def _authority(value: str | None) -> str:
    """HD: ``&OID&ISO`` for an OID, the namespace id otherwise."""
    if not value:
        return ""
    return f"&{value}&ISO" if _OID.match(value) else _escape(value)


def patient_cx(patient: PatientIdentity) -> str:
    """XDS patientId: the INS with its OID, type ``NH`` (qualified identities only)."""
    if not patient.ins or not patient.ins_oid:
        raise ValueError("no qualified INS")
    return f"{patient.ins}^^^&{patient.ins_oid}&ISO^NH"


def source_patient_cx(patient: PatientIdentity) -> str:
    """sourcePatientId: the site's local id (IPP), type ``PI``."""
    return f"{_escape(patient.ipp)}^^^{_authority(patient.ipp_authority_oid or patient.ipp_authority)}^PI"


def source_patient_info(patient: PatientIdentity) -> tuple[str, ...]:
    """sourcePatientInfo: PID-5 (birth name, type L), PID-7, PID-8 (ITI TF-3 4.2.3.2.20)."""
    given = patient.first_given_name
    values = [f"PID-5|{_escape(patient.birth_family_name)}^{_escape(given)}^^^^^L"]
    if patient.birth_date:
        values.append(f"PID-7|{patient.birth_date}")
    if patient.sex:
        values.append(f"PID-8|{patient.sex}")
    return tuple(values)


def person_xcn(person: Practitioner) -> str:
    """authorPerson / legalAuthenticator of a professional identified by IdNatPS."""
    return (f"{person.id_nat_ps}^{_escape(person.family_name)}^{_escape(person.given_name)}^^^"
            f"{_escape(person.prefix or '')}^^^&{ID_NAT_PS_OID}&ISO^D^^^IDNPS")


def organisation_xon(organisation: Organisation) -> str:
    """authorInstitution of a structure identified by IdNatStruct."""
    return f"{_escape(organisation.name)}^^^^^&{ID_NAT_STRUCT_OID}&ISO^IDNST^^^{organisation.id_nat_struct}"


def accession_reference(accession: str, issuer: str | None) -> str:
    """referenceIdList entry of the accession number (``urn:ihe:iti:xds:2013:accession``)."""
    return f"{_escape(accession)}^^^{_authority(issuer)}^urn:ihe:iti:xds:2013:accession"


def study_reference(study_instance_uid: str) -> str:
    """referenceIdList entry of the Study Instance UID (``urn:ihe:iti:xds:2016:studyInstanceUID``)."""
    return f"{study_instance_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID"


def order_reference(order: str, issuer: str | None) -> str:
    """referenceIdList entry of the order (placer order number, ``urn:ihe:iti:xds:2013:order``)."""
    return f"{_escape(order)}^^^{_authority(issuer)}^urn:ihe:iti:xds:2013:order"


def confidentiality_codes(visibility: Visibility) -> tuple[Code, ...]:
    """``N`` plus the DMP visibility codes the MetaDMPMSS flags ask for."""
    codes = [CONFIDENTIALITY_NORMAL]
    if visibility.masked_to_professionals:
        codes.append(Code("MASQUE_PS", VISIBILITY_SCHEME, "Masqué aux professionnels de santé"))
    if visibility.invisible_to_patient:
        codes.append(Code("INVISIBLE_PATIENT", VISIBILITY_SCHEME, "Non visible par le patient"))
    if visibility.invisible_to_legal_representatives:
        codes.append(Code("INVISIBLE_REPRESENTANTS_LEGAUX", VISIBILITY_SCHEME,
                          "Non visible par les représentants légaux du patient"))
    return tuple(codes)


def dicom_local_datetime(date: str, time: str | None, zone: ZoneInfo) -> datetime | None:
    """A DICOM DA/TM pair, local time at the site, as an aware datetime (``None`` if unusable).

    DICOM dates and times carry no offset (PS3.5 6.2): they are the acquisition site's wall clock,
    which for an overseas site (Réunion, Guyane, Polynésie…) is hours away from Paris. XDS wants UTC.
    """
    date = date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    clock = (time or "").strip().split(".")[0].ljust(6, "0")[:6]
    if not clock.isdigit():
        clock = "000000"
    try:
        naive = datetime.strptime(date + clock, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=zone).astimezone(UTC)
