"""Route class of the SOAP endpoints: every failure leaves as a SOAP fault, never an HTML 500."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from registry.errors import SoapFault
from registry.soap.response import fault_response

__all__ = ["SoapRoute"]

log = logging.getLogger("registry.soap")


class SoapRoute(APIRoute):
    """Maps :class:`~registry.errors.SoapFault` to its fault, anything unexpected to ``env:Receiver``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def soap_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SoapFault as fault:
                log.info("SOAP fault %s (%s): %s", fault.code, fault.subcode or "-", fault.reason)
                return fault_response(fault, getattr(request.state, "message_id", None))
            except Exception:
                log.exception("unexpected error on %s", request.url.path)
                internal = SoapFault("Receiver", "internal error of the registry; the request may be retried")
                return fault_response(internal, getattr(request.state, "message_id", None))

        return soap_handler
