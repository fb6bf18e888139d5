"""ITI-18 Registry Stored Query (ITI TF-2a §3.18): FindDocuments, GetDocuments, GetAssociations.

Results are limited to the patient of the caller's VIHF assertion: FindDocuments for another patient
is refused (``XDSPatientIdDoesNotMatch``); GetDocuments and GetAssociations silently leave out other
patients' objects, as if they did not exist. ``returnType`` ``LeafClass`` returns the registered
ebRIM objects with their current status, ``ObjectRef`` only their entryUUIDs.
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree
from sqlalchemy.orm import Session

from registry.context import RegistryContext
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.security.vihf import VihfPrincipal
from registry.soap.xmlparse import parse_xml
from registry.store import crud
from registry.store.models import AssociationRow, DocumentEntryRow
from registry.xds.authorization import patient_error
from registry.xds.ns import QUERY, RIM, STABLE_DOCUMENT_ENTRY, STATUS_APPROVED
from registry.xds.query_params import QueryParams, code_filters, reference_filters, time_bound
from registry.xds.responses import adhoc_query_response

__all__ = ["ACTION", "FIND_DOCUMENTS", "GET_ASSOCIATIONS", "GET_DOCUMENTS", "RESPONSE_ACTION", "stored_query"]

ACTION = "urn:ihe:iti:2007:RegistryStoredQuery"
RESPONSE_ACTION = "urn:ihe:iti:2007:RegistryStoredQueryResponse"

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"

_STATUS_PREFIX = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
_RETURN_TYPES = ("LeafClass", "ObjectRef")


def _failure(code: ErrorCode, context: str, location: str = "") -> XdsFailure:
    return XdsFailure([RegistryError(code, context, location)])


def _leaf(ebrim: bytes, status: str, home: str) -> etree._Element:
    element = parse_xml(crud.decompress(ebrim))
    element.set("status", _STATUS_PREFIX + status)
    element.set("home", home)
    return element


def _object_ref(entry_uuid: str, home: str) -> etree._Element:
    return etree.Element(f"{{{RIM}}}ObjectRef", id=entry_uuid, home=home)


def _documents_out(rows: list[DocumentEntryRow], return_type: str, home: str) -> list[etree._Element]:
    if return_type == "ObjectRef":
        return [_object_ref(row.entry_uuid, home) for row in rows]
    return [_leaf(row.ebrim, row.status, home) for row in rows]


def _associations_out(rows: list[AssociationRow], return_type: str, home: str) -> list[etree._Element]:
    if return_type == "ObjectRef":
        return [_object_ref(row.entry_uuid, home) for row in rows]
    return [_leaf(row.ebrim, "Approved", home) for row in rows]


def _find_documents(
    session: Session, params: QueryParams, principal: VihfPrincipal, ctx: RegistryContext, return_type: str
) -> list[etree._Element]:
    patient_id = params.single("$XDSDocumentEntryPatientId", required=True)
    assert patient_id is not None
    denied = patient_error(principal, patient_id, "$XDSDocumentEntryPatientId")
    if denied:
        raise XdsFailure([denied])
    entry_types = params.any_of("$XDSDocumentEntryType")
    if entry_types and STABLE_DOCUMENT_ENTRY not in entry_types:
        return []  # only stable entries exist here
    statuses = params.any_of("$XDSDocumentEntryStatus") or [STATUS_APPROVED]
    query = crud.DocumentFilter(
        patient_id=patient_id,
        statuses=[s[len(_STATUS_PREFIX) :] for s in statuses if s.startswith(_STATUS_PREFIX)],
        class_codes=code_filters(params.any_of("$XDSDocumentEntryClassCode")),
        type_codes=code_filters(params.any_of("$XDSDocumentEntryTypeCode")),
        format_codes=code_filters(params.any_of("$XDSDocumentEntryFormatCode")),
        practice_setting_codes=code_filters(params.any_of("$XDSDocumentEntryPracticeSettingCode")),
        facility_type_codes=code_filters(params.any_of("$XDSDocumentEntryHealthcareFacilityTypeCode")),
        event_codes=[code_filters(g) for g in params.all_of_any("$XDSDocumentEntryEventCodeList")],
        confidentiality_codes=[code_filters(g) for g in params.all_of_any("$XDSDocumentEntryConfidentialityCode")],
        creation_from=_bound(params, "$XDSDocumentEntryCreationTimeFrom"),
        creation_to=_bound(params, "$XDSDocumentEntryCreationTimeTo"),
        service_start_from=_bound(params, "$XDSDocumentEntryServiceStartTimeFrom"),
        service_start_to=_bound(params, "$XDSDocumentEntryServiceStartTimeTo"),
        service_stop_from=_bound(params, "$XDSDocumentEntryServiceStopTimeFrom"),
        service_stop_to=_bound(params, "$XDSDocumentEntryServiceStopTimeTo"),
        author_persons=params.any_of("$XDSDocumentEntryAuthorPerson"),
        reference_ids=reference_filters(params.any_of("$XDSDocumentEntryReferenceIdList")),
    )
    limit = ctx.settings.max_query_results
    rows = crud.find_documents(session, query=query, limit=limit + 1)
    if len(rows) > limit:
        raise _failure(ErrorCode.TOO_MANY_RESULTS, f"more than {limit} documents match; narrow the query")
    return _documents_out(rows, return_type, ctx.settings.home_community_id)


def _bound(params: QueryParams, name: str) -> str | None:
    return time_bound(params.single(name), name)


def _get_documents(
    session: Session, params: QueryParams, principal: VihfPrincipal, ctx: RegistryContext, return_type: str
) -> list[etree._Element]:
    uuids = params.any_of("$XDSDocumentEntryEntryUUID")
    unique_ids = params.any_of("$XDSDocumentEntryUniqueId")
    if uuids and unique_ids:
        raise _failure(
            ErrorCode.STORED_QUERY_PARAM_NUMBER,
            "give $XDSDocumentEntryEntryUUID or $XDSDocumentEntryUniqueId, not both",
        )
    if not uuids and not unique_ids:
        raise _failure(
            ErrorCode.STORED_QUERY_MISSING_PARAM, "$XDSDocumentEntryEntryUUID or $XDSDocumentEntryUniqueId is required"
        )
    params.single("$homeCommunityId")
    rows = (
        crud.documents_by_uuids(session, entry_uuids=uuids)
        if uuids
        else list(crud.documents_by_unique_ids(session, unique_ids=unique_ids).values())
    )
    rows = sorted((r for r in rows if r.patient_id == principal.patient_id), key=lambda r: r.id)
    return _documents_out(rows, return_type, ctx.settings.home_community_id)


def _get_associations(
    session: Session, params: QueryParams, principal: VihfPrincipal, ctx: RegistryContext, return_type: str
) -> list[etree._Element]:
    uuids = params.any_of("$uuid")
    if not uuids:
        raise _failure(ErrorCode.STORED_QUERY_MISSING_PARAM, "required parameter $uuid is missing", "$uuid")
    params.single("$homeCommunityId")
    rows = [r for r in crud.related_associations(session, uuids=uuids) if r.patient_id == principal.patient_id]
    return _associations_out(rows, return_type, ctx.settings.home_community_id)


_QUERIES: dict[str, Callable[[Session, QueryParams, VihfPrincipal, RegistryContext, str], list[etree._Element]]] = {
    FIND_DOCUMENTS: _find_documents,
    GET_DOCUMENTS: _get_documents,
    GET_ASSOCIATIONS: _get_associations,
}


def stored_query(ctx: RegistryContext, payload: etree._Element, principal: VihfPrincipal) -> etree._Element:
    """Run one ``query:AdhocQueryRequest``; return its ``query:AdhocQueryResponse``.

    Raises
    ------
    XdsFailure
        Unknown query (``XDSUnknownStoredQuery``), missing or repeated parameters, too many results,
        another patient.
    """
    if payload.tag != f"{{{QUERY}}}AdhocQueryRequest":
        raise _failure(
            ErrorCode.REGISTRY_ERROR, f"body element {etree.QName(payload).text} is not query:AdhocQueryRequest"
        )
    option = payload.find(f"{{{QUERY}}}ResponseOption")
    return_type = option.get("returnType", "LeafClass") if option is not None else "LeafClass"
    if return_type not in _RETURN_TYPES:
        raise _failure(ErrorCode.REGISTRY_ERROR, f"returnType {return_type!r} is not LeafClass or ObjectRef")
    adhoc_query = payload.find(f"{{{RIM}}}AdhocQuery")
    if adhoc_query is None:
        raise _failure(ErrorCode.REGISTRY_ERROR, "rim:AdhocQuery is missing")
    query_id = adhoc_query.get("id", "")
    handler = _QUERIES.get(query_id)
    if handler is None:
        raise _failure(
            ErrorCode.UNKNOWN_STORED_QUERY,
            f"stored query {query_id!r} is not supported (FindDocuments, GetDocuments, GetAssociations are)",
        )
    params = QueryParams.from_query(adhoc_query)
    with ctx.database.session() as session:
        objects = handler(session, params, principal, ctx, return_type)
    return adhoc_query_response(objects)
