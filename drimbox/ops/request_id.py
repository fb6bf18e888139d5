"""The request id: one id per request, accepted from the caller or made here, logged and passed on.

An incoming ``X-Request-ID`` is kept when it is 1-64 characters of ``[A-Za-z0-9._:-]`` (anything else
— too long, spaces, control characters — is replaced, so a caller cannot inject log lines or grow
them without bound); otherwise a new one is generated. It is bound to structlog's context variables
for the whole request (every log line of the request carries ``request_id``), returned in the
response's ``X-Request-ID``, and sent on the node's outgoing HTTP calls made while handling it —
node → node (retrievals) and node → registry (look-ups, publication) — through the httpx event hook
of :func:`request_id_hooks`. Worker threads that act outside any request (publication jobs) bind
their own id (``job-<id>``) with :func:`bound_request_id`.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import structlog

from drimbox.limits import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HEADER",
    "RequestIdMiddleware",
    "bound_request_id",
    "current_request_id",
    "request_id_hooks",
    "valid_request_id",
]

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_KEY = "request_id"


def valid_request_id(value: str | None) -> str | None:
    """``value`` when it is an acceptable request id, else ``None``."""
    if value is None or _VALID.fullmatch(value) is None:
        return None
    return value


def current_request_id() -> str | None:
    """The request id bound in this context (request task, or a thread that copied its context)."""
    value = structlog.contextvars.get_contextvars().get(_KEY)
    return str(value) if value is not None else None


@contextlib.contextmanager
def bound_request_id(request_id: str) -> Iterator[None]:
    """Bind ``request_id`` for the duration of the block (logs and outgoing calls carry it)."""
    with structlog.contextvars.bound_contextvars(**{_KEY: request_id}):
        yield


def _add_header(request: httpx.Request) -> None:
    request_id = current_request_id()
    if request_id is not None and HEADER not in request.headers:
        request.headers[HEADER] = request_id


def request_id_hooks() -> dict[str, list[Callable[[httpx.Request], None]]]:
    """``event_hooks`` for an ``httpx.Client``: each request carries the current request id."""
    return {"request": [_add_header]}


class RequestIdMiddleware:
    """ASGI middleware: accept or make the request id, bind it for the request, return it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope.get("headers", []) if name.lower() == b"x-request-id"), None)
        request_id = valid_request_id(incoming.decode("latin-1") if incoming is not None else None) \
            or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        with bound_request_id(request_id):
            await self.app(scope, receive, send_with_id)
