"""The two XDS.b SOAP endpoints: ``/xds/repository`` (ITI-41, ITI-43) and ``/xds/registry`` (ITI-18, ITI-57).

Handlers are thin: dispatch on ``wsa:Action``, run the transaction, wrap its answer in a SOAP
envelope with ``wsa:RelatesTo``. An :class:`~registry.errors.XdsFailure` becomes the transaction's
own response with status Failure (HTTP 200, as XDS.b requires); a database or store failure becomes
``XDSRegistryError`` / ``XDSRepositoryError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from lxml import etree
from sqlalchemy.exc import SQLAlchemyError

from registry.deps import ContextDep, SoapCall, SoapCallDep, authenticate_soap
from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.soap.response import soap_response
from registry.soap.route import SoapRoute
from registry.xds import provide, query, retrieve, update
from registry.xds.ns import RS
from registry.xds.responses import adhoc_query_response, registry_response, retrieve_response

__all__ = ["create_xds_router"]

log = logging.getLogger("registry.xds")


def _record_outcome(request: Request, body: etree._Element) -> None:
    """The XDS status of the answer (``success``, ``failure``, ``partial``), for metrics and the access log."""
    carrier = body if body.get("status") else body.find(f"{{{RS}}}RegistryResponse")  # ITI-43 nests it
    status = (carrier.get("status", "") if carrier is not None else "").rsplit(":", 1)[-1]
    request.state.outcome = {"Success": "success", "Failure": "failure", "PartialSuccess": "partial"}.get(
        status, "none"
    )


def _answer(
    request: Request,
    call: SoapCall,
    response_action: str,
    transaction: Callable[[], etree._Element],
    failure: Callable[[list[RegistryError]], etree._Element],
    store_error: ErrorCode,
) -> Response:
    try:
        body = transaction()
    except XdsFailure as refused:
        log.info("%s refused: %s", call.request.action, refused)
        body = failure(refused.errors)
    except (SQLAlchemyError, OSError) as exc:
        log.exception("%s failed in the store", call.request.action)
        body = failure([RegistryError(store_error, f"storage failure, retry later ({type(exc).__name__})")])
    _record_outcome(request, body)
    return soap_response(response_action, call.request.message_id, body, mtom=call.request.mtom)


def create_xds_router() -> APIRouter:
    """The SOAP routes, every one behind :func:`~registry.deps.authenticate_soap`."""
    # Documented for clients holding the registry to its schema: SOAP 1.2 (MTOM: multipart/related) answers,
    # and a SOAP Fault with its HTTP status (SOAP 1.2 Part 2 §7.5.2) for every refusal.
    soap: dict[str, Any] = {"application/soap+xml": {"schema": {"type": "string"}}}
    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "SOAP 1.2 response (MTOM)", "content": {**soap, "multipart/related": {}}},
        "default": {"description": "SOAP 1.2 Fault", "content": soap},
    }
    router = APIRouter(route_class=SoapRoute, dependencies=[Depends(authenticate_soap)], tags=["XDS.b"],
                       responses=responses)

    @router.post("/xds/repository", response_class=Response, summary="Document Repository: ITI-41, ITI-43")
    def repository(request: Request, call: SoapCallDep, ctx: ContextDep) -> Response:
        """SOAP 1.2 (MTOM) endpoint of the Document Repository actor."""
        if call.request.action == retrieve.ACTION:
            try:
                body, attachments = retrieve.retrieve_documents(ctx, call.request.payload, call.principal)
            except XdsFailure as refused:
                body, attachments = retrieve_response([], refused.errors), []
            except (SQLAlchemyError, OSError) as exc:
                log.exception("ITI-43 failed in the store")
                error = RegistryError(
                    ErrorCode.REPOSITORY_ERROR, f"storage failure, retry later ({type(exc).__name__})"
                )
                body, attachments = retrieve_response([], [error]), []
            _record_outcome(request, body)
            # ITI TF-2b §3.43.5: the response is MTOM whatever the request was.
            return soap_response(
                retrieve.RESPONSE_ACTION, call.request.message_id, body, mtom=True, attachments=attachments
            )
        return _answer(
            request,
            call,
            provide.RESPONSE_ACTION,
            lambda: provide.provide_and_register(ctx, call.request, call.principal),
            registry_response,
            ErrorCode.REPOSITORY_ERROR,
        )

    @router.post("/xds/registry", response_class=Response, summary="Document Registry: ITI-18, ITI-57")
    def registry(request: Request, call: SoapCallDep, ctx: ContextDep) -> Response:
        """SOAP 1.2 endpoint of the Document Registry actor."""
        if call.request.action == query.ACTION:
            return _answer(
                request,
                call,
                query.RESPONSE_ACTION,
                lambda: query.stored_query(ctx, call.request.payload, call.principal),
                lambda errors: adhoc_query_response([], errors),
                ErrorCode.REGISTRY_ERROR,
            )
        return _answer(
            request,
            call,
            update.RESPONSE_ACTION,
            lambda: update.update_document_set(ctx, call.request.payload, call.principal),
            registry_response,
            ErrorCode.REGISTRY_ERROR,
        )

    return router
