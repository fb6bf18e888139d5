"""HL7 v2.5 data types in XDS metadata as the DMP constrains them (ITI TF-3 §4.2.3.1, CI-SIS).

Each ``parse_*`` function returns the parts the registry uses or raises :class:`Hl7FormatError` whose
message names what is wrong, so it can go verbatim into a ``codeContext``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "IDNATPS_OID",
    "IDNATSTRUCT_OID",
    "OID",
    "REFERENCE_ID_TYPES",
    "Cx",
    "Hl7FormatError",
    "ReferenceId",
    "Xcn",
    "Xon",
    "ins_key_is_valid",
    "parse_dtm",
    "parse_patient_id",
    "parse_reference_id",
    "parse_source_patient_id",
    "parse_xcn",
    "parse_xon",
]

OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_DTM = re.compile(r"^[0-9]{14}$")
_NIR_SHAPE = re.compile(r"^[0-9]{5}(?:2A|2B|[0-9]{2})[0-9]{8}$")

IDNATPS_OID = "1.2.250.1.71.4.2.1"
"""Assigning authority of national health-professional identifiers (IdNatPS)."""
IDNATSTRUCT_OID = "1.2.250.1.71.4.2.2"
"""Assigning authority of national structure identifiers (IdNatStruct)."""

REFERENCE_ID_TYPES = frozenset(
    {
        "urn:ihe:iti:xds:2013:uniqueId",
        "urn:ihe:iti:xds:2013:accession",
        "urn:ihe:iti:xds:2013:referral",
        "urn:ihe:iti:xds:2013:order",
        "urn:ihe:iti:xdw:2013:workflowInstanceId",
        "urn:ihe:iti:xds:2015:encounterId",
        "urn:ihe:iti:xds:2016:studyInstanceUID",
    }
)
"""CXi.5 values of ``referenceIdList`` (ITI TF-3 Table 4.2.3.1.7-3)."""


class Hl7FormatError(ValueError):
    """A value does not have the HL7 form XDS/DMP requires."""


@dataclass(frozen=True, slots=True)
class Cx:
    """A patient identifier: CX.1 and the CX.4 universal id."""

    id: str
    authority_oid: str
    type_code: str


@dataclass(frozen=True, slots=True)
class Xcn:
    """A person (authorPerson, legalAuthenticator): id, names, assigning authority, id type (XCN.13)."""

    id: str
    family: str
    given: str
    authority_oid: str
    id_type: str


@dataclass(frozen=True, slots=True)
class Xon:
    """An organisation (authorInstitution): name and organisation identifier (XON.10)."""

    name: str
    authority_oid: str
    id_type: str
    id: str


@dataclass(frozen=True, slots=True)
class ReferenceId:
    """A CXi ``referenceIdList`` value: the id, its authority (may be empty) and its type."""

    value: str
    id: str
    authority_oid: str
    id_type: str


def _authority(component: str, what: str) -> str:
    """The universal id of an HD ``namespace&OID&ISO`` (CX.4, XCN.9, XON.6)."""
    subs = component.split("&")
    if len(subs) != 3 or subs[2] != "ISO" or not OID.match(subs[1]):
        raise Hl7FormatError(f"{what}: assigning authority {component!r} is not '&<OID>&ISO'")
    return subs[1]


def _any_authority(component: str, what: str) -> str:
    """An HD that may be a local namespace alone (``IPP-SITE``) or carry an OID; returns the OID or ``""``.

    Local identifiers (IPP, accession, order) are often issued by authorities with no OID; IHE only
    requires the assigning authority to be present (ITI TF-3 §4.2.3.2.19).
    """
    if "&" not in component:
        if not component.strip():
            raise Hl7FormatError(f"{what}: assigning authority is empty")
        return ""
    return _authority(component, what)


def ins_key_is_valid(ins: str) -> bool:
    """Whether the last two digits of a 15-character NIR/NIA are its key: 97 - (first 13 mod 97).

    Corsican department codes count as numbers: 2A as 19, 2B as 18 (INSEE rule).
    """
    if not _NIR_SHAPE.match(ins):
        return False
    body = ins[:13].replace("2A", "19", 1) if ins[5:7] == "2A" else ins[:13].replace("2B", "18", 1)
    return 97 - int(body) % 97 == int(ins[13:])


def parse_patient_id(value: str, accepted_oids: tuple[str, ...]) -> Cx:
    """A DMP patient id ``<INS>^^^&<INS OID>&ISO^NH`` (DESIGN §3, ITI TF-3 §4.2.3.2.16).

    The INS is 15 characters (13 + a 2-digit key, Corsican 2A/2B allowed) and its key must check.
    """
    components = value.split("^")
    if len(components) != 5 or components[1] or components[2]:
        raise Hl7FormatError(f"patient id {value!r} is not of the form <INS>^^^&<OID>&ISO^NH")
    ins, authority, type_code = components[0], components[3], components[4]
    oid = _authority(authority, f"patient id {value!r}")
    if type_code != "NH":
        raise Hl7FormatError(f"patient id {value!r}: identifier type code must be NH (national health number)")
    if oid not in accepted_oids:
        raise Hl7FormatError(
            f"patient id {value!r}: {oid} is not an INS assigning authority ({', '.join(accepted_oids)})"
        )
    if not _NIR_SHAPE.match(ins):
        raise Hl7FormatError(f"patient id {value!r}: INS {ins!r} is not 13 characters plus a 2-digit key")
    if not ins_key_is_valid(ins):
        raise Hl7FormatError(f"patient id {value!r}: INS key {ins[13:]} does not match its first 13 characters")
    return Cx(ins, oid, type_code)


def parse_source_patient_id(value: str) -> Cx:
    """``sourcePatientId``: ``<id>^^^<authority>^<type>`` (IPP with ``PI``, or the INS with ``NH``).

    The authority is ``&<OID>&ISO`` or a local namespace id.
    """
    components = value.split("^")
    if len(components) < 4 or not components[0] or components[1] or components[2]:
        raise Hl7FormatError(f"sourcePatientId {value!r} is not of the form <id>^^^&<OID>&ISO^<type>")
    oid = _any_authority(components[3], f"sourcePatientId {value!r}")
    type_code = components[4] if len(components) > 4 else ""
    if not type_code:
        raise Hl7FormatError(f"sourcePatientId {value!r}: identifier type code (CX.5, e.g. PI) is missing")
    return Cx(components[0], oid, type_code)


def parse_xcn(value: str, what: str) -> Xcn:
    """A person ``id^family^given^^^^^^&<OID>&ISO^<name type>^^^<id type>`` (XCN, ITI TF-3 §4.2.3.1.7)."""
    components = value.split("^")
    if len(components) < 9 or not components[0]:
        raise Hl7FormatError(f"{what} {value!r}: XCN needs an identifier (XCN.1) and an assigning authority (XCN.9)")
    oid = _authority(components[8], f"{what} {value!r}")
    id_type = components[12] if len(components) > 12 else ""
    if not id_type:
        raise Hl7FormatError(f"{what} {value!r}: identifier type code (XCN.13, e.g. IDNPS) is missing")
    if id_type == "IDNPS" and oid != IDNATPS_OID:
        raise Hl7FormatError(f"{what} {value!r}: an IDNPS identifier is assigned by {IDNATPS_OID}, not {oid}")
    return Xcn(components[0], components[1], components[2], oid, id_type)


def parse_xon(value: str, what: str) -> Xon:
    """An organisation ``name^^^^^&<OID>&ISO^<id type>^^^<id>`` (XON, ITI TF-3 §4.2.3.1.7)."""
    components = value.split("^")
    if len(components) < 10 or not components[0] or not components[9]:
        raise Hl7FormatError(f"{what} {value!r}: XON needs a name (XON.1) and an organisation identifier (XON.10)")
    oid = _authority(components[5], f"{what} {value!r}")
    id_type = components[6]
    if not id_type:
        raise Hl7FormatError(f"{what} {value!r}: identifier type code (XON.7, e.g. IDNST) is missing")
    if id_type == "IDNST" and oid != IDNATSTRUCT_OID:
        raise Hl7FormatError(f"{what} {value!r}: an IDNST identifier is assigned by {IDNATSTRUCT_OID}, not {oid}")
    return Xon(components[0], oid, id_type, components[9])


def parse_reference_id(value: str) -> ReferenceId:
    """A ``referenceIdList`` CXi ``<id>^^^<authority or empty>^<type>`` (ITI TF-3 §4.2.3.2.28).

    A Study Instance UID reference must carry a DICOM UID (≤ 64 characters, digits and dots).
    """
    components = value.split("^")
    if len(components) < 5 or not components[0] or components[1] or components[2]:
        raise Hl7FormatError(f"referenceIdList value {value!r} is not of the form <id>^^^<authority>^<type>")
    authority = _any_authority(components[3], f"referenceIdList value {value!r}") if components[3] else ""
    id_type = components[4]
    if id_type not in REFERENCE_ID_TYPES:
        raise Hl7FormatError(f"referenceIdList value {value!r}: unknown identifier type {id_type!r}")
    if id_type == "urn:ihe:iti:xds:2016:studyInstanceUID" and (len(components[0]) > 64 or not OID.match(components[0])):
        raise Hl7FormatError(f"referenceIdList value {value!r}: {components[0]!r} is not a DICOM UID")
    return ReferenceId(value, components[0], authority, id_type)


def parse_dtm(value: str, what: str) -> datetime:
    """A UTC ``YYYYMMDDhhmmss`` (ITI TF-3 §4.2.3.1.5: times are UTC, no offset; the DMP wants seconds)."""
    if not _DTM.match(value):
        hint = " (a time-zone offset means local time; XDS times are UTC)" if ("+" in value or "-" in value) else ""
        raise Hl7FormatError(f"{what} {value!r} is not a UTC time YYYYMMDDhhmmss{hint}")
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise Hl7FormatError(f"{what} {value!r} is not a valid date and time") from exc
