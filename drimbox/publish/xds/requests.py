"""Request bodies of ITI-18, ITI-41, ITI-43 and ITI-57 (the SOAP Body's first element)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from drimbox.publish.xds.mtom import Attachment, cid_href
from drimbox.publish.xds.rim import Association, Code, Submission, SubmissionSet, query_list, submit_objects_request
from drimbox.publish.xds.vocabulary import NS, STATUS, STORED_QUERY, AssociationType

__all__ = [
    "DocumentPart",
    "FindDocumentsQuery",
    "find_documents_request",
    "get_documents_request",
    "provide_and_register_request",
    "retrieve_request",
    "update_status_request",
]

_RIM = f"{{{NS['rim']}}}"
_XDSB = f"{{{NS['xdsb']}}}"
_QUERY = f"{{{NS['query']}}}"


@dataclass(frozen=True, slots=True)
class DocumentPart:
    """A document of an ITI-41: the ExtrinsicObject id it belongs to, its MIME type and bytes."""

    doc_id: str
    mime_type: str
    content: bytes


def provide_and_register_request(
    metadata: etree._Element, documents: Sequence[DocumentPart]
) -> tuple[etree._Element, list[Attachment]]:
    """``xdsb:ProvideAndRegisterDocumentSetRequest`` (ITI TF-2 3.41.4.1.2) and its MTOM attachments."""
    request = etree.Element(_XDSB + "ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": NS["xdsb"]})
    request.append(metadata)
    attachments = []
    for index, document in enumerate(documents, start=1):
        content_id = f"doc{index}@drimbox"
        element = etree.SubElement(request, _XDSB + "Document", id=document.doc_id)
        etree.SubElement(element, f"{{{NS['xop']}}}Include", nsmap={"xop": NS["xop"]}, href=cid_href(content_id))
        attachments.append(Attachment(content_id, document.mime_type, document.content))
    return request, attachments


@dataclass(frozen=True, slots=True)
class FindDocumentsQuery:
    """FindDocuments parameters (ITI TF-2 3.18.4.1.2.3.7.1) the node uses."""

    patient_id: str
    statuses: tuple[str, ...] = (STATUS.APPROVED,)
    reference_ids: tuple[str, ...] = ()
    type_codes: tuple[Code, ...] = ()
    class_codes: tuple[Code, ...] = ()
    format_codes: tuple[Code, ...] = ()


def _adhoc(query_id: str, params: Sequence[tuple[str, str]], return_type: str = "LeafClass") -> etree._Element:
    request = etree.Element(_QUERY + "AdhocQueryRequest", nsmap={"query": NS["query"], "rim": NS["rim"]})
    etree.SubElement(request, _QUERY + "ResponseOption", returnComposedObjects="true", returnType=return_type)
    query = etree.SubElement(request, _RIM + "AdhocQuery", id=query_id)
    for name, value in params:
        slot = etree.SubElement(query, _RIM + "Slot", name=name)
        etree.SubElement(etree.SubElement(slot, _RIM + "ValueList"), _RIM + "Value").text = value
    return request


def _single(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def find_documents_request(query: FindDocumentsQuery) -> etree._Element:
    """ITI-18 FindDocuments, LeafClass."""
    params = [("$XDSDocumentEntryPatientId", _single(query.patient_id)),
              ("$XDSDocumentEntryStatus", query_list(query.statuses))]
    if query.reference_ids:
        params.append(("$XDSDocumentEntryReferenceIdList", query_list(query.reference_ids)))
    for name, codes in (("$XDSDocumentEntryTypeCode", query.type_codes),
                        ("$XDSDocumentEntryClassCode", query.class_codes),
                        ("$XDSDocumentEntryFormatCode", query.format_codes)):
        if codes:
            params.append((name, query_list([c.as_query_value() for c in codes])))
    return _adhoc(STORED_QUERY.FIND_DOCUMENTS, params)


def get_documents_request(*, unique_ids: Sequence[str] = (), entry_uuids: Sequence[str] = ()) -> etree._Element:
    """ITI-18 GetDocuments by uniqueId or by entryUUID (any status)."""
    if bool(unique_ids) == bool(entry_uuids):
        raise ValueError("GetDocuments takes unique ids or entry UUIDs, not both")
    name, values = ("$XDSDocumentEntryUniqueId", unique_ids) if unique_ids else ("$XDSDocumentEntryEntryUUID",
                                                                                 entry_uuids)
    return _adhoc(STORED_QUERY.GET_DOCUMENTS, [(name, query_list(list(values)))])


def retrieve_request(items: Sequence[tuple[str, str]]) -> etree._Element:
    """ITI-43 ``RetrieveDocumentSetRequest`` for (repositoryUniqueId, documentUniqueId) pairs."""
    request = etree.Element(_XDSB + "RetrieveDocumentSetRequest", nsmap={"xdsb": NS["xdsb"]})
    for repository, document in items:
        item = etree.SubElement(request, _XDSB + "DocumentRequest")
        etree.SubElement(item, _XDSB + "RepositoryUniqueId").text = repository
        etree.SubElement(item, _XDSB + "DocumentUniqueId").text = document
    return request


def update_status_request(submission_set: SubmissionSet, targets: Sequence[str], *, original: str = STATUS.APPROVED,
                          new: str = STATUS.DEPRECATED) -> etree._Element:
    """ITI-57 availability status change of document entries (ITI TF-2 3.57.4.1.3.3.1)."""
    associations = tuple(
        Association(f"urn:uuid:{_derived(submission_set.entry_uuid, target)}",
                    AssociationType.UPDATE_AVAILABILITY_STATUS, submission_set.entry_uuid, target,
                    (("OriginalStatus", (original,)), ("NewStatus", (new,))))
        for target in targets
    )
    return submit_objects_request(Submission(submission_set, (), associations))


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "|".join(parts)))
