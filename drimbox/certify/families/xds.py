"""XDS: the registry entry of the node's KOS against the DMP rules (DESIGN §3, ANS Validateur XDS),
read through the registry's MHD view (ITI-67: the XDS metadata as a FHIR DocumentReference).

The rules are the kit's own client-side checks (codes and their schemes, the patient id form,
referenceIdList), following the DMP's documented metadata.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from drimbox.certify.families.dicom import INS_OIDS
from drimbox.certify.model import Family, Profile, Scenario, ScenarioFailed
from drimbox.certify.probe import Probe
from drimbox.certify.soapwire import RIM, XdsWire, patient_cx
from drimbox.certify.wire import token_claims

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



# -- the entry as ITI-18 returns it (ebRIM, the registry's own answer) --------------------------------

_AUTHOR_SCHEME = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
_UNIQUE_ID_SCHEME = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
_PATIENT_ID_SCHEME = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
_CODE_SCHEMES = {"classCode": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
                 "typeCode": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"}
_IDNATPS = re.compile(r"^8\d{11}\^[^^]*\^[^^]*\^.*&1\.2\.250\.1\.71\.4\.2\.1&ISO")
_IDNATSTRUCT = re.compile(r"^[^^]+\^{5}&1\.2\.250\.1\.71\.4\.2\.2&ISO\^IDNST\^{3}\S+$")


def _slot_values(element: etree._Element, name: str) -> list[str]:
    return [str(v.text or "") for s in element.findall(f"{RIM}Slot") if s.get("name") == name
            for v in s.iter(f"{RIM}Value")]


def _iti18_entry(probe: Probe) -> etree._Element:
    publication = probe.data.publication()
    kit = probe.data.study()
    probe.require(probe.target.registry_xds is not None, "the registry's ITI-18 endpoint is not known (--registry)")
    patient = kit.study.patient
    rpps = str(token_claims(probe.wire.token).get("rpps") or "10101010101")
    answer = XdsWire(probe, rpps).find_documents(str(probe.target.registry_xds), patient_cx(str(patient.ins),
                                                                                          str(patient.ins_oid)))
    probe.require(answer.success, f"ITI-18 FindDocuments answered {answer.status} {answer.errors}")
    uid = str(publication.kos.SOPInstanceUID)
    probe.uses(f"registry entry of KOS {uid} (kit-produced study), ITI-18 FindDocuments (ebRIM)")
    assert answer.body is not None
    for entry in answer.body.iter(f"{RIM}ExtrinsicObject"):
        ids = {e.get("identificationScheme"): e.get("value") for e in entry.findall(f"{RIM}ExternalIdentifier")}
        if ids.get(_UNIQUE_ID_SCHEME) == uid:
            return entry
    raise ScenarioFailed(f"ITI-18 FindDocuments of the kit's patient does not return the KOS entry {uid}")


def _iti18_metadata(probe: Probe) -> None:
    entry = _iti18_entry(probe)
    kit = probe.data.study()
    patient = kit.study.patient
    probe.check(entry.get("mimeType") == "application/dicom", f"mimeType {entry.get('mimeType')!r}")
    probe.check(entry.get("status", "").endswith(":Approved"), f"status {entry.get('status')!r}, not Approved")
    ids = {e.get("identificationScheme"): str(e.get("value")) for e in entry.findall(f"{RIM}ExternalIdentifier")}
    probe.check(ids.get(_PATIENT_ID_SCHEME) == patient_cx(str(patient.ins), str(patient.ins_oid)),
                f"XDSDocumentEntry.patientId {ids.get(_PATIENT_ID_SCHEME)!r} is not the INS in CX form")
    classifications = entry.findall(f"{RIM}Classification")
    for what, scheme in _CODE_SCHEMES.items():
        codes = [(str(c.get("nodeRepresentation")), (_slot_values(c, "codingScheme") or [""])[0])
                 for c in classifications if c.get("classificationScheme") == scheme]
        expected = (_CODES[what][1], _CODES[what][0])
        probe.check(codes == [expected], f"{what}: {codes}, expected [{expected}]")
    references = " ".join(_slot_values(entry, "urn:ihe:iti:xds:2013:referenceIdList"))
    probe.check(f"{kit.study.study_instance_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID" in references,
                f"referenceIdList lacks the Study Instance UID in CXi form: {references}")
    probe.check(f"{kit.study.accession_number}^^^" in references and "urn:ihe:iti:xds:2013:accession" in references,
                f"referenceIdList lacks the accession in CXi form: {references}")


def _iti18_authors(probe: Probe) -> None:
    entry = _iti18_entry(probe)
    authors = [c for c in entry.findall(f"{RIM}Classification") if c.get("classificationScheme") == _AUTHOR_SCHEME]
    probe.require(bool(authors), "the KOS entry has no author")
    probe.evidence("data", "authors (ebRIM)", "\n".join(
        f"authorPerson {_slot_values(a, 'authorPerson')} authorInstitution {_slot_values(a, 'authorInstitution')}"
        for a in authors))
    for index, author in enumerate(authors, 1):
        persons = _slot_values(author, "authorPerson")
        probe.check(len(persons) == 1 and bool(_IDNATPS.match(persons[0])),
                    f"author {index}: authorPerson {persons} is not an IdNatPS (8+RPPS, &1.2.250.1.71.4.2.1&ISO)")
        institutions = _slot_values(author, "authorInstitution")
        probe.check(bool(institutions) and all(_IDNATSTRUCT.match(i) for i in institutions),
                    f"author {index}: authorInstitution {institutions} is not an IdNatStruct XON "
                    "(…^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^id)")
        probe.check(bool(_slot_values(author, "authorRole")), f"author {index}: no authorRole")


def _scenario(sid: str, title: str, check: object, requirement: str | None = None) -> Scenario:
    return Scenario(sid, Family.XDS, title, frozenset({Profile.SOURCE}), check,  # type: ignore[arg-type]
                    requirement=requirement, reference="DESIGN §3; ANS Validateur XDS (XDS.xml)")


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("xds.metadata.codes", "typeCode, classCode, formatCode, confidentiality, event and facility codes",
              _codes, requirement="SC.DB/PFI.01.01"),
    _scenario("xds.metadata.patient", "The patient id is the INS in its namespace", _patient,
              requirement="INS/va1.36"),
    _scenario("xds.metadata.reference-ids", "referenceIdList: accession and Study Instance UID", _references),
    _scenario("xds.iti18.metadata", "ITI-18 FindDocuments returns the KOS entry, approved, with the DMP codes, the "
              "INS in CX form and the referenceIdList in CXi form", _iti18_metadata, requirement="SC.DB/PFI.01.01"),
    _scenario("xds.iti18.authors", "ITI-18: the authors are IdNatPS (8+RPPS) with an IdNatStruct authorInstitution",
              _iti18_authors),
)
