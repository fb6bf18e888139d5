"""Synthetic CI-SIS imaging reports: CDA R2 level 1 "CR d'imagerie médicale" (LOINC 18748-4).

The header follows the ANS homologation reports (IMG-CR-IMG, CDA R2 level 1, templateId
``1.3.6.1.4.1.19376.1.2.20``): INS and IPP in ``recordTarget``, birth and used names (qualifiers
BR/CL), author and legal authenticator with their IdNatPS (root ``1.2.250.1.71.4.2.1``) and
organisation IdNatStruct (root ``1.2.250.1.71.4.2.2``), custodian, placer order in
``inFulfillmentOf/order/id`` and accession number in ``order/ps3-20:accessionNumber`` (issuer in
its root), Study Instance UID in ``documentationOf/serviceEvent/id/@root`` with the exam act,
modality and region codes, ``setId``/``versionNumber`` and, for a new version,
``relatedDocument[@typeCode=RPLC]``. The body is a one-page PDF (``nonXMLBody``, base64) written
here without any PDF library.

No patient data: the identity comes from :mod:`drimbox.testdata.identity` or the ANS test patient.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from drimbox.testdata.identity import Patient

__all__ = [
    "ACCESSION_ISSUER_OID",
    "CdaAuthor",
    "ReportSpec",
    "make_report_cda",
    "minimal_pdf",
]

V3 = "urn:hl7-org:v3"
PS320 = "urn:dicom-org:ps3-20"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LOINC = "2.16.840.1.113883.6.1"
DCM = "1.2.840.10008.2.16.4"
ID_NAT_PS = "1.2.250.1.71.4.2.1"
ID_NAT_STRUCT = "1.2.250.1.71.4.2.2"
ACCESSION_ISSUER_OID = "1.2.250.1.213.4.5.2.5"
"""Issuer of the accession numbers of the ANS samples (and default of the generated reports)."""
PLACER_ISSUER_OID = "1.2.250.1.213.4.5.2.6"
IPP_OID = "1.2.250.1.213.4.5.2.4"
PARIS = ZoneInfo("Europe/Paris")

_MODALITIES = {
    "MG": ("24606-6", "MG sein Dépistage", "Mammographie", "76752008", "sein"),
    "CT": ("24627-2", "TDM thorax", "Tomodensitométrie", "51185008", "thorax"),
    "MR": ("24590-2", "IRM cerveau", "Imagerie par résonance magnétique", "12738006", "cerveau"),
}


@dataclass(frozen=True)
class CdaAuthor:
    """A radiologist and the structure they work for (IdNatPS = ``8`` + RPPS; IdNatStruct)."""

    id_nat_ps: str = "801234560801"
    family: str = "BIDEAULT"
    given: str = "Jacques"
    prefix: str = "M"
    organisation: str = "Centre de radiologie Ambroise"
    id_nat_struct: str = "101235555"


@dataclass(frozen=True)
class ReportSpec:
    """What a generated report says (every field has a plausible default but the exam keys).

    Attributes
    ----------
    patient
        Whose report; the INS is written only if the patient has one.
    study_instance_uid, accession_number
        The exam keys (matching images are written with the same ones).
    document_id
        ``ClinicalDocument/id/@root`` (an OID; the ANS MDM samples repeat it in TXA-12).
    set_id, version_number
        Version chain; a new version keeps the ``set_id`` and names ``parent_document_id``.
    effective_time
        Authoring time (aware); the exam ran the hour before.
    """

    patient: Patient
    study_instance_uid: str
    accession_number: str
    document_id: str = "1.2.250.1.213.4.5.4.900"
    set_id: str = "D52DE737-001D-4031-B571-0A0ED7C42300"
    version_number: int = 1
    parent_document_id: str | None = None
    effective_time: datetime = datetime(2025, 1, 14, 10, 30, tzinfo=PARIS)
    accession_issuer: str = ACCESSION_ISSUER_OID
    placer_order: str | None = "OPN900"
    modality: str = "MG"
    author: CdaAuthor = CdaAuthor()
    ipp_oid: str = IPP_OID
    title: str = "CR d’imagerie médicale"
    conclusion: str = "Pas d'anomalie décelée. ACR 1 bilatéral."


def _ts(moment: datetime) -> str:
    return moment.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")


def _escape_pdf(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def minimal_pdf(lines: list[str]) -> bytes:
    """A valid one-page PDF 1.4 with ``lines`` in Helvetica (WinAnsi: French accents are kept).

    Built by hand (five objects and a cross-reference table), so tests need no PDF library.
    """
    body = "BT /F1 12 Tf 72 770 Td 16 TL " + " ".join(f"({_escape_pdf(line)}) '" for line in lines) + " ET"
    content = body.encode("cp1252", errors="replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


class _Builder:
    def __init__(self) -> None:
        self.root = etree.Element(f"{{{V3}}}ClinicalDocument", nsmap={None: V3, "xsi": XSI, "ps3-20": PS320})

    def add(self, parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
        namespace = PS320 if tag.startswith("ps3-20:") else V3
        element = etree.SubElement(parent, f"{{{namespace}}}{tag.removeprefix('ps3-20:')}")
        for key, value in attributes.items():
            element.set(key.rstrip("_"), value)
        if text is not None:
            element.text = text
        return element


def _person(b: _Builder, parent: etree._Element, author: CdaAuthor) -> None:
    b.add(parent, "id", root=ID_NAT_PS, extension=author.id_nat_ps)
    b.add(
        parent,
        "code",
        code="G15_10/SM44",
        displayName="Médecin - Radio-diagnostic (SM)",
        codeSystem="1.2.250.1.213.1.1.4.5",
    )
    b.add(b.add(parent, "addr"), "city", "PARIS")
    b.add(parent, "telecom", value="tel:0146000000", use="WP")
    name = b.add(b.add(parent, "assignedPerson"), "name")
    b.add(name, "prefix", author.prefix)
    b.add(name, "given", author.given)
    b.add(name, "family", author.family)
    b.add(name, "suffix", "DR")


def _organisation(b: _Builder, parent: etree._Element, tag: str, author: CdaAuthor, *, sector: bool) -> None:
    org = b.add(parent, tag)
    b.add(org, "id", root=ID_NAT_STRUCT, extension=author.id_nat_struct)
    b.add(org, "name", author.organisation)
    b.add(org, "telecom", value="tel:0146000000")
    b.add(b.add(org, "addr"), "city", "PARIS")
    if sector:
        b.add(
            org,
            "standardIndustryClassCode",
            code="AMBULATOIRE",
            displayName="Ambulatoire",
            codeSystem="1.2.250.1.213.1.1.4.9",
        )


def _record_target(b: _Builder, spec: ReportSpec) -> None:
    patient = spec.patient
    role = b.add(b.add(b.root, "recordTarget"), "patientRole")
    if patient.ins is not None:
        b.add(role, "id", root=patient.ins_oid, extension=patient.ins)
    b.add(role, "id", root=spec.ipp_oid, extension=patient.ipp)
    person = b.add(role, "patient", classCode="PSN")
    name = b.add(person, "name")
    b.add(name, "family", patient.family, qualifier="BR")
    b.add(name, "given", patient.given, qualifier="BR")
    b.add(name, "given", patient.given)
    b.add(name, "family", patient.family, qualifier="CL")
    b.add(name, "given", patient.given, qualifier="CL")
    sex = {"F": "F", "M": "M"}.get(patient.sex, "UN")
    b.add(person, "administrativeGenderCode", code=sex, codeSystem="2.16.840.1.113883.5.1")
    b.add(person, "birthTime", value=patient.birth_date)


def _service_event(b: _Builder, spec: ReportSpec) -> None:
    act, act_name, modality_name, region, region_name = _MODALITIES.get(spec.modality, _MODALITIES["MG"])
    event = b.add(b.add(b.root, "documentationOf"), "serviceEvent", classCode="ACT")
    b.add(event, "id", root=spec.study_instance_uid)
    code = b.add(event, "code", code=act, displayName=act_name, codeSystem=LOINC, codeSystemName="LOINC")
    modality = b.add(
        code, "translation", code=spec.modality, displayName=modality_name, codeSystem=DCM, codeSystemName="DCM"
    )
    b.add(b.add(modality, "qualifier"), "name", code="121139", displayName="Modalité d'imagerie", codeSystem=DCM)
    anatomy = b.add(
        code,
        "translation",
        code=region,
        displayName=region_name,
        codeSystem="2.16.840.1.113883.6.96",
        codeSystemName="SNOMED CT",
    )
    b.add(b.add(anatomy, "qualifier"), "name", code="39111-0", displayName="localisation anatomique", codeSystem=LOINC)
    times = b.add(event, "effectiveTime")
    b.add(times, "low", value=_ts(spec.effective_time - timedelta(hours=1)))
    b.add(times, "high", value=_ts(spec.effective_time - timedelta(minutes=40)))
    performer = b.add(b.add(event, "performer", typeCode="PRF"), "assignedEntity")
    _person(b, performer, spec.author)
    _organisation(b, performer, "representedOrganization", spec.author, sector=True)


def make_report_cda(spec: ReportSpec, *, double_encoded: bool = False) -> bytes:
    """Write the CDA R2 report described by ``spec``.

    Parameters
    ----------
    spec
        The report's content.
    double_encoded
        Reproduce the quirk of some ANS samples (E-MDM, F-ORU…): UTF-8 text encoded a second time
        ("mÃ©dicale"), the XML declaration still saying UTF-8.

    Returns
    -------
    bytes
        The XML document, UTF-8.
    """
    b = _Builder()
    root, author = b.root, spec.author
    root.set(f"{{{XSI}}}schemaLocation", "urn:hl7-org:v3 ../infrastructure/cda/CDA_extended.xsd")
    b.add(root, "realmCode", code="FR")
    b.add(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    for template in ("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1", "1.3.6.1.4.1.19376.1.2.20"):
        b.add(root, "templateId", root=template)
    b.add(root, "id", root=spec.document_id)
    act = _MODALITIES.get(spec.modality, _MODALITIES["MG"])
    code = b.add(
        root, "code", code="18748-4", displayName="CR d'imagerie médicale", codeSystem=LOINC, codeSystemName="LOINC"
    )
    b.add(code, "translation", code=act[0], displayName=act[1], codeSystem=LOINC, codeSystemName="LOINC")
    b.add(root, "title", spec.title)
    b.add(root, "effectiveTime", value=_ts(spec.effective_time))
    b.add(root, "confidentialityCode", code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25")
    b.add(root, "languageCode", code="fr-FR")
    b.add(root, "setId", root=spec.set_id)
    b.add(root, "versionNumber", value=str(spec.version_number))
    _record_target(b, spec)
    author_element = b.add(root, "author")
    b.add(author_element, "time", value=_ts(spec.effective_time))
    assigned = b.add(author_element, "assignedAuthor")
    _person(b, assigned, author)
    _organisation(b, assigned, "representedOrganization", author, sector=True)
    custodian = b.add(b.add(root, "custodian", typeCode="CST"), "assignedCustodian", classCode="ASSIGNED")
    _organisation(b, custodian, "representedCustodianOrganization", author, sector=False)
    legal = b.add(root, "legalAuthenticator")
    b.add(legal, "time", value=_ts(spec.effective_time))
    b.add(legal, "signatureCode", code="S")
    entity = b.add(legal, "assignedEntity")
    _person(b, entity, author)
    _organisation(b, entity, "representedOrganization", author, sector=True)
    order = b.add(b.add(root, "inFulfillmentOf"), "order")
    if spec.placer_order:
        b.add(order, "id", root=PLACER_ISSUER_OID, extension=spec.placer_order)
    b.add(order, "ps3-20:accessionNumber", root=spec.accession_issuer, extension=spec.accession_number)
    _service_event(b, spec)
    if spec.parent_document_id is not None:
        parent = b.add(b.add(root, "relatedDocument", typeCode="RPLC"), "parentDocument")
        b.add(parent, "id", root=spec.parent_document_id)
        b.add(parent, "setId", root=spec.set_id)
        b.add(parent, "versionNumber", value=str(spec.version_number - 1))
    encounter = b.add(b.add(root, "componentOf"), "encompassingEncounter")
    b.add(encounter, "code", code="AMB", displayName="ambulatoire", codeSystem="2.16.840.1.113883.5.4")
    facility = b.add(b.add(encounter, "location"), "healthCareFacility")
    b.add(facility, "code", code="SA08", displayName="Cabinet de groupe", codeSystem="1.2.250.1.71.4.2.4")
    pdf = minimal_pdf(
        [
            spec.title,
            f"Patient : {spec.patient.family} {spec.patient.given}",
            f"Examen : {act[1]} (accession {spec.accession_number})",
            f"Conclusion : {spec.conclusion}",
        ]
    )
    text = b.add(
        b.add(b.add(root, "component"), "nonXMLBody"), "text", mediaType="application/pdf", representation="B64"
    )
    text.text = base64.b64encode(pdf).decode("ascii")
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    if double_encoded:
        declaration, _, rest = xml.partition(b"?>")
        try:
            misread = rest.decode("cp1252")  # what a Windows tool does with UTF-8 it takes for ANSI
        except UnicodeDecodeError:
            misread = rest.decode("latin-1")
        xml = declaration + b"?>" + misread.encode("utf-8")
    return xml
