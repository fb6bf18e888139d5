"""Response bodies of the XDS.b transactions (ebRS 3.0, ITI TF-3 §4.2.4).

``RegistryResponse`` (ITI-41, ITI-57), ``AdhocQueryResponse`` (ITI-18) and
``RetrieveDocumentSetResponse`` (ITI-43) share the status / ``RegistryErrorList`` layout built here.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from registry.errors import RegistryError
from registry.xds.ns import QUERY, RIM, RS, SEVERITY_ERROR, STATUS_FAILURE, STATUS_PARTIAL_SUCCESS, STATUS_SUCCESS, XDSB

__all__ = ["adhoc_query_response", "registry_error_list", "registry_response", "retrieve_response", "status_for"]


def status_for(errors: Sequence[RegistryError], *, partial: bool = False) -> str:
    """Success without errors; PartialSuccess when some of the work was done; else Failure."""
    if not errors:
        return STATUS_SUCCESS
    return STATUS_PARTIAL_SUCCESS if partial else STATUS_FAILURE


def registry_error_list(errors: Sequence[RegistryError]) -> etree._Element:
    """``rs:RegistryErrorList`` with one ``rs:RegistryError`` per error (severity Error)."""
    element = etree.Element(f"{{{RS}}}RegistryErrorList", nsmap={"rs": RS})
    element.set("highestSeverity", SEVERITY_ERROR)
    for error in errors:
        child = etree.SubElement(element, f"{{{RS}}}RegistryError")
        child.set("errorCode", str(error.code))
        child.set("codeContext", error.context)
        child.set("severity", SEVERITY_ERROR)
        if error.location:
            child.set("location", error.location)
    return element


def registry_response(errors: Sequence[RegistryError] = (), *, partial: bool = False) -> etree._Element:
    """``rs:RegistryResponse`` (ITI-41, ITI-57 responses)."""
    element = etree.Element(f"{{{RS}}}RegistryResponse", nsmap={"rs": RS})
    element.set("status", status_for(errors, partial=partial))
    if errors:
        element.append(registry_error_list(errors))
    return element


def adhoc_query_response(objects: Sequence[etree._Element], errors: Sequence[RegistryError] = ()) -> etree._Element:
    """``query:AdhocQueryResponse`` with its ``rim:RegistryObjectList`` (ITI-18)."""
    element = etree.Element(f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rim": RIM, "rs": RS})
    element.set("status", status_for(errors))
    if errors:
        element.append(registry_error_list(errors))
    object_list = etree.SubElement(element, f"{{{RIM}}}RegistryObjectList")
    for obj in objects:
        object_list.append(obj)
    return element


def retrieve_response(
    documents: Sequence[tuple[str, str, str, str, str]], errors: Sequence[RegistryError] = ()
) -> etree._Element:
    """``xdsb:RetrieveDocumentSetResponse`` (ITI-43).

    Parameters
    ----------
    documents
        ``(home community id, repository unique id, document unique id, mime type, content id)``
        per returned document; the bytes travel as the MTOM part named by the content id.
    errors
        Documents not returned.
    """
    element = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB, "rs": RS})
    response = etree.SubElement(element, f"{{{RS}}}RegistryResponse")
    response.set("status", status_for(errors, partial=bool(documents)))
    if errors:
        response.append(registry_error_list(errors))
    for home, repository, unique_id, mime_type, content_id in documents:
        document = etree.SubElement(element, f"{{{XDSB}}}DocumentResponse")
        if home:
            etree.SubElement(document, f"{{{XDSB}}}HomeCommunityId").text = home
        etree.SubElement(document, f"{{{XDSB}}}RepositoryUniqueId").text = repository
        etree.SubElement(document, f"{{{XDSB}}}DocumentUniqueId").text = unique_id
        etree.SubElement(document, f"{{{XDSB}}}mimeType").text = mime_type
        include = etree.SubElement(
            etree.SubElement(document, f"{{{XDSB}}}Document"),
            "{http://www.w3.org/2004/08/xop/include}Include",
            nsmap={"xop": "http://www.w3.org/2004/08/xop/include"},
        )
        include.set("href", f"cid:{content_id}")
    return element
