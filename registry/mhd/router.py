"""MHD routes: ITI-67 Find Document References, DocumentReference read, ITI-68 Retrieve Document.

``GET /fhir/DocumentReference?patient.identifier=urn:oid:<INS OID>|<INS>`` with optional ``status``
(``current``, ``superseded``, comma = OR), ``type`` (``[system|]code``, comma = OR), ``_count`` and
``_offset``; ``GET /fhir/DocumentReference/{id}``; ``GET /fhir/Binary/{id}`` returns the document's
own bytes with its mimeType. All behind a bearer token; errors are ``OperationOutcome``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from registry.deps import ContextDep, authenticate_bearer
from registry.errors import Unauthenticated
from registry.mhd.resources import bundle, document_reference, operation_outcome, patient_id_from_token
from registry.store import crud
from registry.store.blobs import BlobNotFound
from registry.store.models import DocumentEntryRow
from registry.xds.hl7 import OID

__all__ = ["FHIR_JSON", "FhirRoute", "create_mhd_router"]

FHIR_JSON = "application/fhir+json"
_STATUS = {"current": "Approved", "superseded": "Deprecated"}
_DEFAULT_COUNT = 100

log = logging.getLogger("registry.mhd")


def _outcome(status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(code, diagnostics), status_code=status, media_type=FHIR_JSON, headers=headers)


class FhirRoute(APIRoute):
    """Maps errors to ``OperationOutcome``: 401 (with ``WWW-Authenticate``), 4xx, and 500 for the unexpected."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated as exc:
                return _outcome(401, "login", str(exc), {"WWW-Authenticate": 'Bearer realm="registry"'})
            except HTTPException as exc:
                code = {400: "invalid", 404: "not-found"}.get(exc.status_code, "processing")
                return _outcome(exc.status_code, code, str(exc.detail))
            except Exception:
                log.exception("unexpected error on %s", request.url.path)
                return _outcome(500, "exception", "internal error of the registry")

        return fhir_handler


def _base(request: Request, public_url: str | None) -> str:
    root = public_url.rstrip("/") if public_url else str(request.base_url).rstrip("/")
    return f"{root}/fhir"


def _type_filters(value: str | None) -> list[crud.CodeFilter]:
    filters = []
    for token in (value or "").split(","):
        if not token.strip():
            continue
        system, bar, code = token.strip().rpartition("|")
        scheme = system.removeprefix("urn:oid:") if bar and system else None
        filters.append(crud.CodeFilter(code, scheme))
    return filters


def _int_param(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise HTTPException(400, f"{name} must be a non-negative integer")
    return min(int(value), maximum)


def create_mhd_router() -> APIRouter:
    """The FHIR routes, every one behind :func:`~registry.deps.authenticate_bearer`."""
    # Documented for clients holding the registry to its schema: FHIR JSON (or the document's own type for
    # Binary) on success, an OperationOutcome for every refusal (FhirRoute maps them all).
    fhir_json: dict[str, Any] = {FHIR_JSON: {"schema": {"type": "object"}}}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "FHIR resource (Binary: the document's bytes)", "content": {**fhir_json, "*/*": {}}},
        "default": {"description": "Refusal: FHIR OperationOutcome", "content": fhir_json},
    }
    router = APIRouter(prefix="/fhir", route_class=FhirRoute, dependencies=[Depends(authenticate_bearer)], tags=["MHD"],
                       responses=responses)

    @router.get("/DocumentReference", summary="ITI-67 Find Document References")
    def find_document_references(request: Request, ctx: ContextDep) -> Response:
        """Search DocumentReferences of one patient (by INS)."""
        params = request.query_params
        token = params.get("patient.identifier")
        if not token:
            raise HTTPException(400, "patient.identifier=urn:oid:<INS OID>|<INS> is required")
        patient_id = patient_id_from_token(token)
        if patient_id is None or not OID.match(token.partition("|")[0].removeprefix("urn:oid:")):
            raise HTTPException(400, f"patient.identifier {token!r} is not urn:oid:<INS OID>|<INS>")
        statuses = [s.strip() for s in params.get("status", "current,superseded").split(",") if s.strip()]
        unknown = [s for s in statuses if s not in _STATUS]
        if unknown:
            raise HTTPException(400, f"status {', '.join(unknown)} is not current or superseded")
        maximum = ctx.settings.max_query_results
        count = _int_param(params.get("_count"), "_count", min(_DEFAULT_COUNT, maximum), maximum)
        offset = _int_param(params.get("_offset"), "_offset", 0, 10**9)
        query = crud.DocumentFilter(
            patient_id=patient_id, statuses=[_STATUS[s] for s in statuses], type_codes=_type_filters(params.get("type"))
        )
        base = _base(request, ctx.settings.public_url)
        with ctx.database.session() as session:
            total = crud.count_documents(session, query=query)
            rows = crud.find_documents(session, query=query, limit=count, offset=offset) if count else []
            resources = [document_reference(row, base) for row in rows]
        self_params = {k: v for k, v in params.items() if k != "_offset"}
        self_url = f"{base}/DocumentReference?{urlencode({**self_params, '_offset': offset})}"
        next_url = (
            f"{base}/DocumentReference?{urlencode({**self_params, '_offset': offset + count})}"
            if count and offset + count < total
            else None
        )
        return JSONResponse(bundle(resources, total, self_url, next_url, base), media_type=FHIR_JSON)

    @router.get("/DocumentReference/{resource_id}", summary="DocumentReference read")
    def read_document_reference(resource_id: str, request: Request, ctx: ContextDep) -> Response:
        """One DocumentReference by id (the entryUUID without ``urn:uuid:``)."""
        with ctx.database.session() as session:
            row = _row(session, resource_id)
            return JSONResponse(document_reference(row, _base(request, ctx.settings.public_url)), media_type=FHIR_JSON)

    @router.get("/Binary/{resource_id}", summary="ITI-68 Retrieve Document")
    def retrieve_document(resource_id: str, ctx: ContextDep) -> Response:
        """The document's bytes, with its own mimeType (``application/dicom`` for a KOS)."""
        with ctx.database.session() as session:
            row = _row(session, resource_id)
        try:
            data = ctx.blobs.get(row.blob_sha256)
        except BlobNotFound as exc:
            raise HTTPException(404, f"the bytes of document {row.unique_id} are missing") from exc
        return Response(
            data, media_type=row.mime_type, headers={"Content-Disposition": f'attachment; filename="{row.unique_id}"'}
        )

    return router


def _row(session: Any, resource_id: str) -> DocumentEntryRow:
    row = crud.document_by_uuid(session, entry_uuid=f"urn:uuid:{resource_id}")
    if row is None:
        raise HTTPException(404, f"no DocumentReference {resource_id}")
    return row
