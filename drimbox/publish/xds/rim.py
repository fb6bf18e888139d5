"""XDS.b metadata as ebRIM 3.0 XML: write a submission, read document entries back.

Generic XDS (ITI TF-3 4.2.3 / 4.2.5): nothing French here; the DMP's values are chosen by
:mod:`drimbox.publish.metadata`. Elements come in the order of the ebRIM schema (Slots, Name,
Description, Classifications, ExternalIdentifiers), which strict registries check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree

from drimbox.publish.xds.vocabulary import NS, SCHEME, STATUS, AssociationType, ObjectType

__all__ = [
    "Association",
    "Author",
    "Code",
    "DocumentEntry",
    "RegistryDocument",
    "Submission",
    "SubmissionSet",
    "association_slots",
    "dtm",
    "has_member",
    "parse_extrinsic_object",
    "query_list",
    "submit_objects_request",
]

_RIM = f"{{{NS['rim']}}}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
LANG = "fr-FR"


def dtm(moment: datetime) -> str:
    """XDS DTM: UTC, to the second, no offset (ITI TF-3 Table 4.2.3.1.7-2)."""
    if moment.tzinfo is None:
        raise ValueError("XDS times are UTC: give an aware datetime")
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value: ``nodeRepresentation``, ``codingScheme`` slot, display ``Name``."""

    code: str
    scheme: str
    display: str = ""

    def as_query_value(self) -> str:
        """The ``code^^scheme`` form of stored query parameters (ITI TF-2 3.18.4.1.2.3.4)."""
        return f"{self.code}^^{self.scheme}"


@dataclass(frozen=True, slots=True)
class Author:
    """An author classification: person (XCN), institutions (XON), roles, specialties."""

    person: str | None = None
    institutions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """One stable document entry of a submission (ITI TF-3 Table 4.2.3.2-1)."""

    entry_uuid: str
    unique_id: str
    mime_type: str
    patient_id: str
    title: str
    class_code: Code
    type_code: Code
    format_code: Code
    healthcare_facility_type: Code
    practice_setting: Code
    creation_time: str
    language_code: str
    source_patient_id: str
    confidentiality: tuple[Code, ...]
    authors: tuple[Author, ...] = ()
    event_codes: tuple[Code, ...] = ()
    source_patient_info: tuple[str, ...] = ()
    legal_authenticator: str | None = None
    service_start: str | None = None
    service_stop: str | None = None
    comments: str | None = None
    reference_ids: tuple[str, ...] = ()
    hash: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class SubmissionSet:
    """The submission set (ITI TF-3 Table 4.2.3.3-1)."""

    entry_uuid: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    content_type: Code
    authors: tuple[Author, ...] = ()
    title: str | None = None
    comments: str | None = None


@dataclass(frozen=True, slots=True)
class Association:
    """An association between two registry objects, with its slots."""

    id: str
    type: str
    source: str
    target: str
    slots: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Submission:
    """What one ITI-41 (or ITI-57) registers: a submission set, its entries, their associations."""

    submission_set: SubmissionSet
    entries: tuple[DocumentEntry, ...] = ()
    associations: tuple[Association, ...] = field(default=())


class _Ids:
    """Symbolic ids for classifications and external identifiers, unique within one request."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}{self._counts[prefix]:02d}"


def _el(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, _RIM + tag, attrs)


def _slot(parent: etree._Element, name: str, values: Iterable[str]) -> None:
    values = list(values)
    if not values:
        return
    slot = _el(parent, "Slot", name=name)
    value_list = _el(slot, "ValueList")
    for value in values:
        _el(value_list, "Value").text = value


def _localized(parent: etree._Element, tag: str, text: str | None) -> None:
    if text is None:
        return
    holder = _el(parent, tag)
    string = _el(holder, "LocalizedString", charset="UTF-8", value=text)
    string.set(_XML_LANG, LANG)


def _code(parent: etree._Element, ids: _Ids, scheme: str, obj: str, code: Code) -> None:
    cl = _el(parent, "Classification", classificationScheme=scheme, classifiedObject=obj, id=ids("cl"),
             nodeRepresentation=code.code)
    _slot(cl, "codingScheme", [code.scheme])
    _localized(cl, "Name", code.display)


def _author(parent: etree._Element, ids: _Ids, scheme: str, obj: str, author: Author) -> None:
    cl = _el(parent, "Classification", classificationScheme=scheme, classifiedObject=obj, id=ids("cl"),
             nodeRepresentation="")
    _slot(cl, "authorPerson", [author.person] if author.person else [])
    _slot(cl, "authorInstitution", author.institutions)
    _slot(cl, "authorRole", author.roles)
    _slot(cl, "authorSpecialty", author.specialties)


def _external_id(parent: etree._Element, ids: _Ids, scheme: str, obj: str, value: str, name: str) -> None:
    ei = _el(parent, "ExternalIdentifier", id=ids("ei"), identificationScheme=scheme, registryObject=obj, value=value)
    _localized(ei, "Name", name)


def _entry(parent: etree._Element, ids: _Ids, e: DocumentEntry) -> None:
    eo = _el(parent, "ExtrinsicObject", id=e.entry_uuid, mimeType=e.mime_type, objectType=ObjectType.STABLE)
    _slot(eo, "creationTime", [e.creation_time])
    _slot(eo, "hash", [e.hash] if e.hash else [])
    _slot(eo, "languageCode", [e.language_code])
    _slot(eo, "legalAuthenticator", [e.legal_authenticator] if e.legal_authenticator else [])
    _slot(eo, "serviceStartTime", [e.service_start] if e.service_start else [])
    _slot(eo, "serviceStopTime", [e.service_stop] if e.service_stop else [])
    _slot(eo, "size", [str(e.size)] if e.size is not None else [])
    _slot(eo, "sourcePatientId", [e.source_patient_id])
    _slot(eo, "sourcePatientInfo", e.source_patient_info)
    _slot(eo, "urn:ihe:iti:xds:2013:referenceIdList", e.reference_ids)
    _localized(eo, "Name", e.title)
    _localized(eo, "Description", e.comments)
    for author in e.authors:
        _author(eo, ids, SCHEME.DE_AUTHOR, e.entry_uuid, author)
    _code(eo, ids, SCHEME.DE_CLASS, e.entry_uuid, e.class_code)
    for code in e.confidentiality:
        _code(eo, ids, SCHEME.DE_CONFIDENTIALITY, e.entry_uuid, code)
    for code in e.event_codes:
        _code(eo, ids, SCHEME.DE_EVENT, e.entry_uuid, code)
    _code(eo, ids, SCHEME.DE_FORMAT, e.entry_uuid, e.format_code)
    _code(eo, ids, SCHEME.DE_FACILITY, e.entry_uuid, e.healthcare_facility_type)
    _code(eo, ids, SCHEME.DE_PRACTICE, e.entry_uuid, e.practice_setting)
    _code(eo, ids, SCHEME.DE_TYPE, e.entry_uuid, e.type_code)
    _external_id(eo, ids, SCHEME.DE_PATIENT_ID, e.entry_uuid, e.patient_id, "XDSDocumentEntry.patientId")
    _external_id(eo, ids, SCHEME.DE_UNIQUE_ID, e.entry_uuid, e.unique_id, "XDSDocumentEntry.uniqueId")


def _submission_set(parent: etree._Element, ids: _Ids, s: SubmissionSet) -> None:
    rp = _el(parent, "RegistryPackage", id=s.entry_uuid)
    _slot(rp, "submissionTime", [s.submission_time])
    _localized(rp, "Name", s.title)
    _localized(rp, "Description", s.comments)
    for author in s.authors:
        _author(rp, ids, SCHEME.SS_AUTHOR, s.entry_uuid, author)
    _code(rp, ids, SCHEME.SS_CONTENT_TYPE, s.entry_uuid, s.content_type)
    _el(rp, "Classification", classificationNode=SCHEME.SUBMISSION_SET_NODE, classifiedObject=s.entry_uuid,
        id=ids("cl"))
    _external_id(rp, ids, SCHEME.SS_PATIENT_ID, s.entry_uuid, s.patient_id, "XDSSubmissionSet.patientId")
    _external_id(rp, ids, SCHEME.SS_SOURCE_ID, s.entry_uuid, s.source_id, "XDSSubmissionSet.sourceId")
    _external_id(rp, ids, SCHEME.SS_UNIQUE_ID, s.entry_uuid, s.unique_id, "XDSSubmissionSet.uniqueId")


def submit_objects_request(submission: Submission) -> etree._Element:
    """The ``lcm:SubmitObjectsRequest`` of ITI-41 / ITI-57 (ITI TF-3 4.2.3)."""
    request = etree.Element(f"{{{NS['lcm']}}}SubmitObjectsRequest", nsmap={"lcm": NS["lcm"], "rim": NS["rim"]})
    objects = _el(request, "RegistryObjectList")
    ids = _Ids()
    _submission_set(objects, ids, submission.submission_set)
    for entry in submission.entries:
        _entry(objects, ids, entry)
    for assoc in submission.associations:
        el = _el(objects, "Association", associationType=assoc.type, id=assoc.id, sourceObject=assoc.source,
                 targetObject=assoc.target)
        for name, values in assoc.slots:
            _slot(el, name, values)
    return request


# -- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryDocument:
    """A document entry as a registry returns it (ITI-18 LeafClass)."""

    entry_uuid: str
    unique_id: str
    status: str
    patient_id: str
    mime_type: str
    slots: dict[str, tuple[str, ...]]
    classifications: tuple[tuple[str, Code], ...]
    """(classificationScheme, code) pairs; author classifications are left out."""
    title: str = ""
    """``Name`` (the entry's title)."""
    comments: str = ""
    """``Description`` (the entry's comments)."""
    authors: tuple[Author, ...] = ()
    """The ``author`` classifications (person, institutions, roles, specialties), for consumers that
    show where a document comes from (the source site is the author institution)."""

    @property
    def approved(self) -> bool:
        return self.status == STATUS.APPROVED

    def slot(self, name: str) -> str | None:
        """The first value of a slot."""
        values = self.slots.get(name, ())
        return values[0] if values else None

    def codes(self, scheme: str) -> tuple[Code, ...]:
        """Every code under one classification scheme."""
        return tuple(code for s, code in self.classifications if s == scheme)

    @property
    def type_code(self) -> Code | None:
        return next(iter(self.codes(SCHEME.DE_TYPE)), None)

    @property
    def reference_ids(self) -> tuple[str, ...]:
        return self.slots.get("urn:ihe:iti:xds:2013:referenceIdList", ())

    @property
    def repository_unique_id(self) -> str | None:
        return self.slot("repositoryUniqueId")


def _text_of(element: etree._Element, tag: str) -> str:
    value = element.find(f"{_RIM}{tag}/{_RIM}LocalizedString")
    return "" if value is None else value.get("value", "")


def _slots(element: etree._Element) -> dict[str, tuple[str, ...]]:
    return {
        slot.get("name", ""): tuple(v.text or "" for v in slot.iterfind(f"{_RIM}ValueList/{_RIM}Value"))
        for slot in element.iterfind(f"{_RIM}Slot")
    }


def parse_extrinsic_object(eo: etree._Element) -> RegistryDocument:
    """Read one ``rim:ExtrinsicObject`` of a query response."""
    external = {ei.get("identificationScheme"): ei.get("value", "") for ei in eo.iterfind(f"{_RIM}ExternalIdentifier")}
    codes: list[tuple[str, Code]] = []
    for cl in eo.iterfind(f"{_RIM}Classification"):
        scheme = cl.get("classificationScheme", "")
        node = cl.get("nodeRepresentation")
        if not node:
            continue  # author classifications have an empty node representation
        coding = _slots(cl).get("codingScheme", ("",))
        codes.append((scheme, Code(node, coding[0] if coding else "", _text_of(cl, "Name"))))
    authors = []
    for cl in eo.iterfind(f"{_RIM}Classification"):
        if cl.get("classificationScheme") != SCHEME.DE_AUTHOR:
            continue
        values = _slots(cl)
        person = values.get("authorPerson", ())
        authors.append(Author(person=person[0] if person else None,
                              institutions=values.get("authorInstitution", ()),
                              roles=values.get("authorRole", ()), specialties=values.get("authorSpecialty", ())))
    return RegistryDocument(
        entry_uuid=eo.get("id", ""),
        unique_id=external.get(SCHEME.DE_UNIQUE_ID, ""),
        status=eo.get("status", ""),
        patient_id=external.get(SCHEME.DE_PATIENT_ID, ""),
        mime_type=eo.get("mimeType", ""),
        slots=_slots(eo),
        classifications=tuple(codes),
        title=_text_of(eo, "Name"),
        comments=_text_of(eo, "Description"),
        authors=tuple(authors),
    )


def association_slots(status: str = "Original") -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ``SubmissionSetStatus`` slot of a HasMember association (ITI TF-3 4.2.2.1.1)."""
    return (("SubmissionSetStatus", (status,)),)


def has_member(assoc_id: str, submission_set: str, entry: str) -> Association:
    """A HasMember association from the submission set to one of its entries."""
    return Association(assoc_id, AssociationType.HAS_MEMBER, submission_set, entry, association_slots())


def query_list(values: Sequence[str]) -> str:
    """A stored query multi-value parameter: ``('a','b')`` with quotes doubled (ITI TF-2 3.18.4.1.2.3.5)."""
    return "(" + ",".join("'" + v.replace("'", "''") + "'" for v in values) + ")"
