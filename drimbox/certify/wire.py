"""The kit's HTTP clients, and the evidence each exchange leaves.

Every request a scenario makes goes through :class:`Wire`, which writes the raw request and
response (headers verbatim, bearer tokens shortened, bodies truncated) as :class:`Evidence`.
Clients: ``site`` (the site face, server certificate checked against the CA), ``network`` (mutual
TLS with the ``tls`` client certificate, from the listed source address), ``stranger`` (the same
certificate from an address that is not on the trust list) and ``no-client-cert`` (TLS without one).
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from drimbox.certify.model import Evidence
from drimbox.certify.target import Target

__all__ = ["BODY_EVIDENCE_BYTES", "Reply", "Wire", "format_exchange", "token_claims"]

BODY_EVIDENCE_BYTES = 2048
"""Bodies are kept whole for the checks but shown truncated to this in the evidence."""
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class Reply:
    """A response as a check sees it."""

    status: int
    headers: httpx.Headers
    content: bytes
    elapsed_s: float
    url: str

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", ""))

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def token_claims(token: str | None) -> dict[str, Any]:
    """The claims of a JWT bearer token, unverified (the kit only reads who it acts as); ``{}`` otherwise."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _shown_header(name: str, value: str) -> str:
    if name.lower() == "authorization" and " " in value:
        scheme, _, token = value.partition(" ")
        return f"{scheme} {token[:12]}…({len(token)} chars)"
    return value


def _shown_body(body: bytes, content_type: str) -> str:
    if not body:
        return ""
    head = body[:BODY_EVIDENCE_BYTES]
    textual = any(t in content_type for t in ("json", "xml", "text", "problem", "html")) or not content_type
    if textual or b"\x00" not in head:
        shown = head.decode("utf-8", "replace")
    else:
        shown = " ".join(f"{b:02x}" for b in head[:256]) + " …"
    more = f"\n… ({len(body)} bytes in all)" if len(body) > BODY_EVIDENCE_BYTES else ""
    return shown + more


def format_exchange(method: str, url: str, headers: Mapping[str, str], body: bytes, reply: Reply | None,
                    error: str | None = None) -> str:
    """The raw text of one exchange, as the evidence shows it."""
    lines = [f"{method} {url} HTTP/1.1"]
    lines += [f"{k}: {_shown_header(k, v)}" for k, v in headers.items()]
    if body:
        lines += ["", _shown_body(body, headers.get("Content-Type", ""))]
    lines.append("")
    if reply is None:
        lines.append(f"(no response: {error})")
    else:
        lines.append(f"HTTP/1.1 {reply.status}   ({reply.elapsed_s * 1000:.0f} ms)")
        lines += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.content:
            lines += ["", _shown_body(reply.content, reply.content_type)]
    return "\n".join(lines)


def _context(target: Target, *, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
    if client_cert and target.client_cert and target.client_key:
        context.load_cert_chain(str(target.client_cert), str(target.client_key))
    return context


class Wire:
    """The recorded HTTP clients of one run; ``sink`` receives the evidence of each exchange."""

    def __init__(self, target: Target, token: str | None) -> None:
        self.target = target
        self.token = token
        self.sink: Callable[[Evidence], None] = lambda _: None
        site_ctx = _context(target, client_cert=False)
        self._clients = {
            "site": httpx.Client(verify=site_ctx, timeout=_TIMEOUT, trust_env=False),
            "network": self._mtls(target.local_address),
            "stranger": self._mtls(target.stranger_address),
            "no-client-cert": httpx.Client(verify=_context(target, client_cert=False), timeout=_TIMEOUT,
                                           trust_env=False),
        }

    def _mtls(self, local_address: str | None) -> httpx.Client:
        context = _context(self.target, client_cert=True)
        transport = httpx.HTTPTransport(verify=context, local_address=local_address)
        return httpx.Client(verify=context, timeout=_TIMEOUT, transport=transport, trust_env=False)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def bearer(self, token: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header with the run's token (or ``token``); empty without one."""
        value = token if token is not None else self.token
        return {"Authorization": f"Bearer {value}"} if value else {}

    def request(self, method: str, url: str, *, via: str = "site", headers: Mapping[str, str] | None = None,
                params: Mapping[str, str] | None = None, content: bytes = b"", title: str = "",
                auth: bool = True) -> Reply:
        """Send one request, record it, return the reply (transport errors are recorded, then raised)."""
        sent = {**(self.bearer() if auth else {}), **(headers or {})}
        request = self._clients[via].build_request(method, url, headers=sent, params=params,
                                                   content=content or None)
        shown = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        started = time.perf_counter()
        try:
            response = self._clients[via].send(request)
        except httpx.HTTPError as exc:
            self.sink(Evidence("http", title or f"{method} {url}",
                               format_exchange(method, str(request.url), shown, content, None, repr(exc))))
            raise
        reply = Reply(response.status_code, response.headers, response.content, time.perf_counter() - started,
                      str(request.url))
        self.sink(Evidence("http", title or f"{method} {request.url.path}",
                           format_exchange(method, str(request.url), shown, content, reply)))
        return reply

    def get(self, url: str, **kwargs: object) -> Reply:
        return self.request("GET", url, **kwargs)  # type: ignore[arg-type]

    @contextmanager
    def stream(self, url: str, *, via: str, headers: Mapping[str, str], title: str,
               token: str | None = None) -> Iterator[httpx.Response]:
        """A streamed GET (big payloads): the evidence keeps the headers, not the body."""
        sent = {**self.bearer(token), **headers}
        started = time.perf_counter()
        with self._clients[via].stream("GET", url, headers=sent) as response:
            yield response
            reply = Reply(response.status_code, response.headers, b"", time.perf_counter() - started, url)
            shown = dict(sent)
            self.sink(Evidence("http", title, format_exchange("GET", url, shown, b"", reply)
                               + f"\n(body streamed: {response.num_bytes_downloaded} bytes)"))
