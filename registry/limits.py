"""HTTP limits on hostile input, enforced before any route runs (issue 7, "Hostile input").

The registry's copy of :mod:`drimbox.limits`: the registry is a separate national service and
imports nothing of the node (DESIGN §4), so the fence is duplicated rather than shared.

A pure ASGI middleware (:class:`LimitsMiddleware`) refuses, with an RFC 9457 problem
(``application/problem+json``):

* a URL (path + query) longer than ``max_url_bytes`` — 414;
* more than ``max_query_params`` query parameters — 400;
* more than ``max_header_count`` headers, one header over ``max_header_bytes`` or all of them over
  ``max_headers_total_bytes`` — 431;
* a request body over its limit — 413. The limit is ``max_body_bytes`` unless a :class:`BodyLimit`
  names the route (STOW-RS and the XDM import take gigabytes; every other body is a form or a small
  JSON document). The body is **counted as it streams**: a declared ``Content-Length`` over the
  limit is refused at once, and a chunked body (no length) is cut when the count passes it. The
  route then sees the client as gone (``http.disconnect``) and whatever it answers is dropped, so a
  route that catches broad exceptions cannot turn the refusal into a 500.

Why a middleware and not per-route checks: it covers every route, including those added later and
those of mounted routers, and a refusal costs no parsing. Routes keep their own, tighter checks
(the SOAP route's ``max_request_bytes``) — this is the outer fence.

The server (uvicorn/h11) bounds the header block itself (``h11_max_incomplete_event_size``); see
:func:`uvicorn_limits` for the arguments ``drimbox registry serve`` passes to ``uvicorn.Config``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BodyLimit", "HttpLimits", "LimitsMiddleware", "registry_http_limits", "uvicorn_limits"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_KiB = 1024
_MiB = 1024 * _KiB
_GiB = 1024 * _MiB


@dataclass(frozen=True)
class BodyLimit:
    """A larger (or smaller) body limit for the routes whose method and path match."""

    method: str
    path: re.Pattern[str]
    max_bytes: int

    def matches(self, method: str, path: str) -> bool:
        """Whether this limit applies to the request."""
        return method == self.method and self.path.fullmatch(path) is not None


@dataclass(frozen=True)
class HttpLimits:
    """The limits one app enforces (defaults suit a JSON API; see :func:`registry_http_limits`)."""

    max_body_bytes: int = 1 * _MiB
    max_url_bytes: int = 8 * _KiB
    max_query_params: int = 256
    max_header_count: int = 100
    max_header_bytes: int = 8 * _KiB
    max_headers_total_bytes: int = 32 * _KiB
    body_limits: tuple[BodyLimit, ...] = field(default_factory=tuple)

    def body_limit(self, method: str, path: str) -> int:
        """The body limit of a request (the first matching :class:`BodyLimit`, else the default)."""
        for rule in self.body_limits:
            if rule.matches(method, path):
                return rule.max_bytes
        return self.max_body_bytes


def registry_http_limits(max_request_bytes: int) -> HttpLimits:
    """The registry's limits: 64 KiB bodies (MHD is read-only), SOAP requests ``2 × max_request_bytes + 1 MiB``.

    The SOAP route enforces ``max_request_bytes`` itself and answers with a SOAP Fault, which is what
    an XDS.b client understands; the fence sits above it so that it only stops what the route would
    otherwise keep reading.
    """
    rules = (BodyLimit("POST", re.compile(r"/xds/(repository|registry)"), 2 * max_request_bytes + _MiB),)
    return HttpLimits(max_body_bytes=64 * _KiB, body_limits=rules)


def uvicorn_limits(limits: HttpLimits) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that bound what the server itself buffers.

    h11 keeps an incomplete request head in memory up to ``h11_max_incomplete_event_size`` and
    answers 400 beyond; set it just above the middleware's header budget so that the middleware's
    431/414 (with a problem body) is what clients normally see. ``http="h11"`` pins the parser
    whose limit this is (httptools has its own, fixed ones).
    """
    head = limits.max_url_bytes + limits.max_headers_total_bytes + 4 * _KiB
    return {"http": "h11", "h11_max_incomplete_event_size": head, "ws": "none", "timeout_keep_alive": 5}


def _problem(status: int, title: str, detail: str, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail,
                       "instance": path}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    return headers, body


async def _refuse(send: Send, status: int, title: str, detail: str, path: str) -> None:
    headers, body = _problem(status, title, detail, path)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _count_query_params(query: bytes) -> int:
    return sum(1 for piece in re.split(rb"[&;]", query) if piece)


class LimitsMiddleware:
    """ASGI middleware enforcing :class:`HttpLimits` (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits if limits is not None else HttpLimits()

    def _head_problem(self, scope: Scope) -> tuple[int, str, str] | None:
        """A refusal for the request line or headers, or ``None`` when they are within the limits."""
        lim = self.limits
        raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
        query: bytes = scope.get("query_string", b"")
        if len(raw_path) + len(query) > lim.max_url_bytes:
            return 414, "URI Too Long", f"the URL is over {lim.max_url_bytes} bytes"
        if _count_query_params(query) > lim.max_query_params:
            return 400, "Bad Request", f"more than {lim.max_query_params} query parameters"
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if len(headers) > lim.max_header_count:
            return 431, "Request Header Fields Too Large", f"more than {lim.max_header_count} header fields"
        total = 0
        for name, value in headers:
            size = len(name) + len(value)
            if size > lim.max_header_bytes:
                return (431, "Request Header Fields Too Large",
                        f"header {name[:40].decode('latin-1')} is over {lim.max_header_bytes} bytes")
            total += size
        if total > lim.max_headers_total_bytes:
            return 431, "Request Header Fields Too Large", f"headers over {lim.max_headers_total_bytes} bytes in all"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        problem = self._head_problem(scope)
        if problem is not None:
            await _refuse(send, problem[0], problem[1], problem[2], path[:200])
            return
        limit = self.limits.body_limit(scope.get("method", "GET"), path)
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length":
                if not value.isdigit():
                    await _refuse(send, 400, "Bad Request", "Content-Length is not a number", path[:200])
                    return
                if int(value) > limit:
                    await _refuse(send, 413, "Content Too Large",
                                  f"request body of {int(value)} bytes is over the {limit}-byte limit", path[:200])
                    return
        await _BodyFence(self.app, limit, path[:200])(scope, receive, send)


class _BodyFence:
    """One request: counts body bytes; past the limit, answers 413 itself and silences the app."""

    def __init__(self, app: ASGIApp, limit: int, path: str) -> None:
        self.app = app
        self.limit = limit
        self.path = path
        self.received = 0
        self.refused = False
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.refused = True
                    if not self.started:
                        self.started = True
                        await _refuse(send, 413, "Content Too Large",
                                      f"request body over the {self.limit}-byte limit", self.path)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the 413 has been sent; the app's answer to a "disconnected" client goes nowhere
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not self.refused:
                raise
            # The app failed on the cut body (a ClientDisconnect, a parse error): the client has its 413.
