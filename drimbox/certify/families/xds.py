"""XDS: the registry entry of the node's KOS against the DMP rules (DESIGN §3, ANS Validateur XDS),
read through the registry's MHD view (ITI-67: the XDS metadata as a FHIR DocumentReference).

The rules are the kit's own client-side checks (codes and their schemes, the patient id form,
referenceIdList), following the DMP's documented metadata.
"""

from __future__ import annotations

from typing import Any

from drimbox.certify.families.dicom import INS_OIDS
from drimbox.certify.model import Family, Profile, Scenario
from drimbox.certify.probe import Probe

__all__ = ["SCENARIOS"]

_CODES = {  # what: (system OID, code)
    "typeCode": ("1.2.250.1.213.1.1.4.12", "IMG-KOS"),
    "classCode": ("1.2.250.1.213.1.1.4.1", "31"),
    "formatCode": ("1.2.840.10008.2.6.1", "1.2.840.10008.5.1.4.1.1.88.59"),
}


def _codings(value: Any) -> list[tuple[str, str]]:
    items = value if isinstance(value, list) else [value] if value else []
    out = []
    for item in items:
        for coding in (item or {}).get("coding", []):
            out.append((str(coding.get("system", "")).removeprefix("urn:oid:"), str(coding.get("code", ""))))
    return out


def _document(probe: Probe) -> dict[str, Any]:
    publication = probe.data.publication()
    probe.uses(f"registry entry of KOS {publication.kos.SOPInstanceUID} (kit-produced study), MHD view")
    probe.evidence("data", "DocumentReference", str(publication.document)[:4000])
    return publication.document


def _codes(probe: Probe) -> None:
    doc = _document(probe)
    probe.check(doc["content"][0]["attachment"].get("contentType") == "application/dicom",
                "mimeType is not application/dicom")
    for what, expected in (("typeCode", _CODES["typeCode"]), ("classCode", _CODES["classCode"])):
        field = "type" if what == "typeCode" else "category"
        probe.check(expected in _codings(doc.get(field)), f"{what}: {_codings(doc.get(field))}, expected {expected}")
    fmt = [(str(c.get("system", "")).removeprefix("urn:oid:"), str(c.get("code", "")))
           for c in [doc["content"][0].get("format", {})]]
    probe.check(_CODES["formatCode"] in fmt, f"formatCode {fmt}, expected {_CODES['formatCode']}")
    security = _codings(doc.get("securityLabel"))
    probe.check(any(s.endswith("2.16.840.1.113883.5.25") for s, _ in security), f"confidentialityCode {security} "
                "has no code of 2.16.840.1.113883.5.25")
    probe.check(bool(_codings(doc.get("context", {}).get("event"))), "eventCodeList is empty (modality, region)")
    probe.check(bool(_codings(doc.get("context", {}).get("facilityType"))), "healthcareFacilityTypeCode missing")
    probe.check(bool(_codings(doc.get("context", {}).get("practiceSetting"))), "practiceSettingCode missing")


def _patient(probe: Probe) -> None:
    doc = _document(probe)
    patient = probe.data.study().study.patient
    identifier = doc.get("subject", {}).get("identifier", {})
    system = str(identifier.get("system", "")).removeprefix("urn:oid:")
    probe.check(identifier.get("value") == patient.ins, f"patient id {identifier.get('value')!r} is not the INS")
    probe.check(system in INS_OIDS, f"patient id namespace {system!r} is not an INS OID")


def _references(probe: Probe) -> None:
    doc = _document(probe)
    kit = probe.data.study()
    related = doc.get("context", {}).get("related", [])
    values = {(str(r.get("identifier", {}).get("type", {}).get("text", "")) or
               str(r.get("identifier", {}).get("system", "")), str(r.get("identifier", {}).get("value", "")))
              for r in related}
    flat = " ".join(f"{t}={v}" for t, v in sorted(values))
    probe.check(any(kit.study.study_instance_uid in v for _, v in values),
                f"referenceIdList has no studyInstanceUID {kit.study.study_instance_uid}: {flat}")
    probe.check(any(v.startswith(kit.study.accession_number) for _, v in values),
                f"referenceIdList has no accession {kit.study.accession_number}: {flat}")


def _scenario(sid: str, title: str, check: object, requirement: str | None = None) -> Scenario:
    return Scenario(sid, Family.XDS, title, frozenset({Profile.SOURCE}), check,  # type: ignore[arg-type]
                    requirement=requirement, reference="DESIGN §3; ANS Validateur XDS (XDS.xml)")


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("xds.metadata.codes", "typeCode, classCode, formatCode, confidentiality, event and facility codes",
              _codes, requirement="SC.DB/PFI.01.01"),
    _scenario("xds.metadata.patient", "The patient id is the INS in its namespace", _patient,
              requirement="INS/va1.36"),
    _scenario("xds.metadata.reference-ids", "referenceIdList: accession and Study Instance UID", _references),
)
