"""The header of a CI-SIS imaging report (CDA R2, IMG-CR-IMG), as the node needs it.

Only the header is read; the body (a PDF or text, CDA level 1) is left alone. Paths follow the
CI-SIS "Compte rendu d'imagerie médicale" model and the ANS homologation reports:

=========================  ==================================================================
Study Instance UID         ``documentationOf/serviceEvent/id/@root`` (PS3.20 §9.1.3)
Accession number           ``inFulfillmentOf/order/ps3-20:accessionNumber`` (root = issuer);
                           ``order/id`` when the report has no ``accessionNumber``
Placer order               ``inFulfillmentOf/order/id`` (when an accessionNumber is present)
Report version             ``setId`` + ``versionNumber``; ``relatedDocument[@typeCode=RPLC]``
Author / legal signer      ``author/assignedAuthor``, ``legalAuthenticator/assignedEntity``:
                           ``id[@root=1.2.250.1.71.4.2.1]/@extension`` = IdNatPS (``8`` + RPPS)
Organisation               ``representedOrganization/id[@root=1.2.250.1.71.4.2.2]`` = IdNatStruct
=========================  ==================================================================

XML is parsed without DTDs, entities or network access. Some RIS double-encode UTF-8 (the ANS
samples E-MDM, F-ORU… say "mÃ©dicale"); display texts read here are repaired, the CDA bytes kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from drimbox.hl7.errors import DataTypeError, ErrorLocation, RequiredFieldMissing
from drimbox.hl7.timestamps import PARIS, parse_timestamp
from drimbox.reports import CodedValue, Organisation, Practitioner

__all__ = ["ID_NAT_PS_OID", "ID_NAT_STRUCT_OID", "CdaHeader", "read_cda"]

V3 = "urn:hl7-org:v3"
PS320 = "urn:dicom-org:ps3-20"
_NS = {"v3": V3, "ps": PS320}

ID_NAT_PS_OID = "1.2.250.1.71.4.2.1"
"""Root of national health-professional ids (IdNatPS: ``8`` + RPPS, ``0`` + ADELI…)."""
ID_NAT_STRUCT_OID = "1.2.250.1.71.4.2.2"
"""Root of national structure ids (IdNatStruct: ``1`` + FINESS, ``3`` + SIRET…)."""

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
_MOJIBAKE = ("Ã", "Â", "â€")


@dataclass(frozen=True, slots=True)
class CdaHeader:
    """What the node takes from the report's CDA header (see the module table)."""

    document_id: str
    set_id: str
    version_number: int
    title: str
    effective_time: datetime
    study_instance_uid: str
    accession_number: str | None
    accession_issuer: str | None
    order_id: str | None
    order_issuer: str | None
    author: Practitioner
    organisation: Organisation | None
    legal_authenticator: Practitioner | None
    custodian: Organisation | None
    service_start: datetime | None
    service_stop: datetime | None
    parent_document_id: str | None
    patient_ids: tuple[tuple[str, str], ...]
    """``recordTarget/patientRole/id`` as (root, extension): the INS and the IPP."""
    language_code: str | None
    confidentiality_code: CodedValue | None
    document_code: CodedValue | None
    exam_codes: tuple[CodedValue, ...]
    practice_setting: CodedValue | None
    healthcare_facility_type: CodedValue | None


def _repair(text: str) -> str:
    """Undo UTF-8 read as Windows-1252/Latin-1 and encoded again ("mÃ©dicale" → "médicale")."""
    if not any(marker in text for marker in _MOJIBAKE):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return text


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return _repair(" ".join("".join(element.itertext()).split()))


def _x(context: etree._Element, path: str) -> list[etree._Element]:
    found = context.xpath(path, namespaces=_NS)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, etree._Element)]


def _one(context: etree._Element, path: str) -> etree._Element | None:
    found = _x(context, path)
    return found[0] if found else None


def _ii(element: etree._Element | None) -> str:
    """An II (instance identifier) as ``root`` or ``root^extension``; ``""`` if absent/null."""
    if element is None:
        return ""
    root = (element.get("root") or "").strip()
    extension = (element.get("extension") or "").strip()
    return f"{root}^{extension}" if root and extension else root or extension


def _code(element: etree._Element | None) -> CodedValue | None:
    if element is None or not element.get("code"):
        return None
    return CodedValue(
        code=element.get("code", ""),
        system=element.get("codeSystem", ""),
        display=_repair(element.get("displayName", "")),
    )


class _Reader:
    """Reads one header, raising errors located at the OBX that carried the CDA."""

    def __init__(self, root: etree._Element, location: ErrorLocation, default_zone: tzinfo) -> None:
        self.root = root
        self.location = location
        self.zone = default_zone

    def missing(self, what: str) -> RequiredFieldMissing:
        return RequiredFieldMissing(f"CDA report: {what}", self.location)

    def time(self, element: etree._Element | None, what: str) -> datetime | None:
        value = (element.get("value") or "").strip() if element is not None else ""
        if not value:
            return None
        try:
            return parse_timestamp(value, self.zone)
        except ValueError as exc:
            raise DataTypeError(f"CDA report: {what}: {exc}", self.location) from exc

    def practitioner(self, entity: etree._Element | None) -> Practitioner | None:
        if entity is None:
            return None
        ident = _one(entity, f"v3:id[@root='{ID_NAT_PS_OID}']")
        number = (ident.get("extension") or "").strip() if ident is not None else ""
        if not number:
            return None
        if len(number) == 11 and number.isdigit():
            number = "8" + number  # a bare RPPS: IdNatPS is the type digit 8 followed by it
        name = _one(entity, "v3:assignedPerson/v3:name")
        return Practitioner(
            id_nat_ps=number,
            family_name=_text(_one(name, "v3:family")) if name is not None else "",
            given_name=_text(_one(name, "v3:given")) if name is not None else "",
            prefix=(_text(_one(name, "v3:prefix")) or None) if name is not None else None,
        )

    def organisation(self, element: etree._Element | None) -> Organisation | None:
        if element is None:
            return None
        ident = _one(element, f"v3:id[@root='{ID_NAT_STRUCT_OID}']")
        number = (ident.get("extension") or "").strip() if ident is not None else ""
        if not number:
            return None
        return Organisation(name=_text(_one(element, "v3:name")), id_nat_struct=number)

    def study_uid(self) -> str:
        for ident in _x(self.root, "v3:documentationOf/v3:serviceEvent/v3:id"):
            candidate = (ident.get("root") or "").strip()
            if ident.get("extension"):
                # PS3.20 puts the UID in @root alone; an extension-only form is tolerated.
                candidate = (ident.get("extension") or "").strip()
            if len(candidate) <= 64 and _UID.fullmatch(candidate):
                return candidate
        raise self.missing("no Study Instance UID in documentationOf/serviceEvent/id/@root")

    def order(self) -> tuple[str | None, str | None, str | None, str | None]:
        """(accession, its issuer, placer order, its issuer)."""
        order = _one(self.root, "v3:inFulfillmentOf/v3:order")
        if order is None:
            return None, None, None, None
        accession = _one(order, "ps:accessionNumber")
        order_id = _one(order, "v3:id")
        placer = (order_id.get("extension") or "").strip() if order_id is not None else ""
        placer_root = (order_id.get("root") or "").strip() if order_id is not None else ""
        if accession is not None and accession.get("extension"):
            issuer = (accession.get("root") or "").strip() or None
            return (
                accession.get("extension", "").strip(),
                issuer,
                placer or None,
                (placer_root or None) if placer else None,
            )
        if placer:
            # No ps3-20:accessionNumber: the order id is taken as the accession (DESIGN F1 layout).
            return placer, placer_root or None, None, None
        return None, None, None, None

    def version(self) -> tuple[str, int]:
        set_id = _ii(_one(self.root, "v3:setId"))
        if not set_id:
            raise self.missing("no setId")
        number = _one(self.root, "v3:versionNumber")
        raw = (number.get("value") or "").strip() if number is not None else ""
        if not raw:
            raise self.missing("no versionNumber/@value")
        if not raw.isdigit() or int(raw) < 1:
            raise DataTypeError(f"CDA report: versionNumber {raw!r} is not a positive integer", self.location)
        return set_id, int(raw)

    def exam_codes(self) -> tuple[CodedValue, ...]:
        code = _one(self.root, "v3:documentationOf/v3:serviceEvent/v3:code")
        if code is None:
            return ()
        codes = [_code(code), *(_code(t) for t in _x(code, "v3:translation"))]
        return tuple(c for c in codes if c is not None)

    def header(self) -> CdaHeader:
        root = self.root
        document_id = _ii(_one(root, "v3:id"))
        if not document_id:
            raise self.missing("no document id (ClinicalDocument/id)")
        set_id, version = self.version()
        effective = self.time(_one(root, "v3:effectiveTime"), "effectiveTime")
        if effective is None:
            raise self.missing("no effectiveTime/@value")
        author = self.practitioner(_one(root, f"v3:author/v3:assignedAuthor[v3:id/@root='{ID_NAT_PS_OID}']"))
        if author is None:
            raise self.missing(f"no author with a national professional id (id/@root={ID_NAT_PS_OID})")
        accession, issuer, placer, placer_issuer = self.order()
        event = _one(root, "v3:documentationOf/v3:serviceEvent/v3:effectiveTime")
        parent = _one(root, "v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id")
        language = _one(root, "v3:languageCode")
        return CdaHeader(
            document_id=document_id,
            set_id=set_id,
            version_number=version,
            title=_text(_one(root, "v3:title")),
            effective_time=effective,
            study_instance_uid=self.study_uid(),
            accession_number=accession,
            accession_issuer=issuer,
            order_id=placer,
            order_issuer=placer_issuer,
            author=author,
            organisation=self.organisation(_one(root, "v3:author/v3:assignedAuthor/v3:representedOrganization")),
            legal_authenticator=self.practitioner(_one(root, "v3:legalAuthenticator/v3:assignedEntity")),
            custodian=self.organisation(
                _one(root, "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization")
            ),
            service_start=self.time(_one(event, "v3:low") if event is not None else None, "serviceEvent low"),
            service_stop=self.time(_one(event, "v3:high") if event is not None else None, "serviceEvent high"),
            parent_document_id=_ii(parent) or None,
            patient_ids=tuple(
                ((i.get("root") or "").strip(), (i.get("extension") or "").strip())
                for i in _x(root, "v3:recordTarget/v3:patientRole/v3:id")
            ),
            language_code=(language.get("code") or None) if language is not None else None,
            confidentiality_code=_code(_one(root, "v3:confidentialityCode")),
            document_code=_code(_one(root, "v3:code")),
            exam_codes=self.exam_codes(),
            practice_setting=_code(
                _one(root, "v3:author/v3:assignedAuthor/v3:representedOrganization/v3:standardIndustryClassCode")
            ),
            healthcare_facility_type=_code(
                _one(root, "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility/v3:code")
            ),
        )


def _parse_xml(document: bytes, location: ErrorLocation) -> etree._Element:
    # No DTD, no entity expansion, no network: the CDA comes from the outside. huge_tree because a
    # level-1 body is one base64 text node that may exceed libxml2's 10 MB default.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    try:
        root = etree.fromstring(document, parser)
    except etree.XMLSyntaxError as exc:
        raise DataTypeError(f"CDA report is not well-formed XML: {exc}", location) from exc
    if root is None or root.tag != f"{{{V3}}}ClinicalDocument":
        tag = root.tag if root is not None else None
        raise DataTypeError(f"CDA report: root element is {tag!r}, not {{{V3}}}ClinicalDocument", location)
    return root


def read_cda(document: bytes, location: ErrorLocation, *, default_zone: tzinfo = PARIS) -> CdaHeader:
    """Read the header of a CDA R2 imaging report.

    Parameters
    ----------
    document
        The CDA XML bytes (decoded from OBX-5).
    location
        Where the CDA sits in the message (OBX-5 of the ED OBX); every error points there.
    default_zone
        Zone of timestamps without an offset.

    Raises
    ------
    DataTypeError
        Not well-formed XML, not a ClinicalDocument, a malformed timestamp or versionNumber.
    RequiredFieldMissing
        No document id, setId, versionNumber, effectiveTime, author with an IdNatPS, or Study
        Instance UID.
    """
    return _Reader(_parse_xml(document, location), location, default_zone).header()
