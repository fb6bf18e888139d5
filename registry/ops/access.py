"""Request ids and access logs: one structured event per request, the id propagated node → registry.

The middleware takes the caller's ``X-Request-ID`` (a node sends the id of the request it is serving)
when it is a plausible token, else makes one; binds it to structlog's context variables for every log
event of the request, standard-library records included (they run through the same processors);
returns it in the response; then logs ``request`` with the transaction, status and duration and counts
the request in :class:`~registry.ops.metrics.RegistryMetrics`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.ops.metrics import RegistryMetrics, transaction_of

__all__ = ["REQUEST_ID_HEADER", "AccessLogMiddleware", "request_id_of"]

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's request id when acceptable (printable token, at most 128 characters), else a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _ACCEPTED_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class AccessLogMiddleware:
    """Pure ASGI middleware (bodies stream through untouched)."""

    def __init__(self, app: ASGIApp, *, metrics: RegistryMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope.get("headers", []))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                transaction = state.get("transaction") or transaction_of(scope.get("path", ""))
                outcome = state.get("outcome", "none")
                self.metrics.observe(transaction=transaction, status=status, outcome=outcome, seconds=seconds)
                # A logger per request: binds to the configuration in force (tests capture it).
                structlog.get_logger("registry.access").info(
                    "request",
                    request_id=request_id,
                    method=scope.get("method"),
                    path=scope.get("path"),
                    transaction=transaction,
                    status=status,
                    outcome=outcome,
                    duration_ms=round(seconds * 1000, 2),
                )
