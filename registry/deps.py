"""Dependencies of the registry's routes: the context and the two authentication guards.

Every router is included with its guard (:func:`authenticate_soap` for XDS.b, :func:`authenticate_bearer`
for FHIR), so no route can be added unprotected; only ``/healthz`` has none (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from registry.context import RegistryContext
from registry.errors import SoapFault
from registry.ops.metrics import transaction_of
from registry.security.bearer import BearerPrincipal
from registry.security.vihf import VihfPrincipal, verify_vihf
from registry.soap.envelope import SoapRequest, parse_soap_request
from registry.xds import provide, query, retrieve, update

__all__ = [
    "ENDPOINT_ACTIONS",
    "BearerDep",
    "ContextDep",
    "SoapCall",
    "SoapCallDep",
    "authenticate_bearer",
    "authenticate_soap",
    "get_context",
]

ENDPOINT_ACTIONS: dict[str, frozenset[str]] = {
    "/xds/repository": frozenset({provide.ACTION, retrieve.ACTION}),
    "/xds/registry": frozenset({query.ACTION, update.ACTION}),
}
"""WS-Addressing actions each SOAP endpoint serves (Document Repository / Document Registry actors)."""


def get_context(request: Request) -> RegistryContext:
    """The app's :class:`RegistryContext`."""
    context: RegistryContext = request.app.state.registry
    return context


ContextDep = Annotated[RegistryContext, Depends(get_context)]


@dataclass(frozen=True)
class SoapCall:
    """An authenticated SOAP request."""

    request: SoapRequest
    principal: VihfPrincipal


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SoapFault("Sender", f"request of {declared} bytes exceeds the limit of {limit}", http_status=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise SoapFault("Sender", f"request exceeds the limit of {limit} bytes", http_status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def authenticate_soap(request: Request, ctx: ContextDep) -> SoapCall:
    """Read, parse and authenticate a SOAP request: size limit, envelope, action, VIHF assertion.

    Raises
    ------
    SoapFault
        Any problem with the message or its assertion (mapped to a SOAP fault by the route class).
    """
    cached = getattr(request.state, "soap_call", None)
    if isinstance(cached, SoapCall):
        return cached
    body = await _read_limited(request, ctx.settings.max_request_bytes)
    soap = await run_in_threadpool(parse_soap_request, request.headers.get("content-type"), body)
    request.state.message_id = soap.message_id
    request.state.transaction = transaction_of(request.url.path, soap.action)  # metrics and access log
    route = request.scope.get("route")
    allowed = ENDPOINT_ACTIONS.get(getattr(route, "path", ""), frozenset())
    if soap.action not in allowed:
        raise SoapFault(
            "Sender",
            f"action {soap.action!r} is not served at {request.url.path} ({', '.join(sorted(allowed))})",
            subcode="wsa:ActionNotSupported",
        )
    settings = ctx.settings
    principal = await run_in_threadpool(
        lambda: verify_vihf(
            soap.header,
            trust=ctx.trust,
            accepted_ins_oids=settings.accepted_ins_oids,
            now=ctx.clock(),
            max_age=timedelta(seconds=settings.vihf_max_age_s),
            skew=timedelta(seconds=settings.clock_skew_s),
        )
    )
    call = SoapCall(soap, principal)
    request.state.soap_call = call
    return call


SoapCallDep = Annotated[SoapCall, Depends(authenticate_soap)]


def authenticate_bearer(request: Request, ctx: ContextDep) -> BearerPrincipal:
    """Verify the bearer token of a FHIR request.

    Raises
    ------
    registry.errors.Unauthenticated
        No or bad token (mapped to 401 by the FHIR route class).
    """
    return ctx.tokens.verify(request.headers.get("authorization"))


BearerDep = Annotated[BearerPrincipal, Depends(authenticate_bearer)]
