"""Caps per peer node: concurrency and bandwidth, inbound (network face) and outbound (retrievals).

Inbound, :class:`PeerLimitsMiddleware` wraps the network face. A request is refused before any
route runs when its peer (the connecting address: every node has its own, DESIGN §2b) already has
``peer_limits.max_concurrent_requests`` in progress — **429** with ``Retry-After`` — or when the face
as a whole has ``max_total_requests`` in progress — **503** with ``Retry-After``. Responses to one peer
are paced to ``max_bytes_per_s`` (a token bucket shared by that peer's requests, one second of
burst): a peer taking a large study slows down, it is never cut. Liveness and readiness are exempt.

Outbound, :class:`OutboundLimiter` gives the consumer's retrievals (F7) the same two caps per
source host: at most ``outbound_max_concurrent`` requests to one source at once, all retrievals of
the node together (further ones wait their turn), and reading paced to ``outbound_max_bytes_per_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

from drimbox.config import PeerLimitSettings
from drimbox.limits import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OutboundLimiter", "PeerLimitsMiddleware", "TokenBucket"]


_EXEMPT = frozenset({"/healthz", "/readyz"})


class TokenBucket:
    """``rate`` bytes per second with one second of burst; thread-safe. ``reserve`` says how long to wait."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.clock = clock
        self._tokens = self.rate
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount: int) -> float:
        """Take ``amount`` bytes; the seconds to wait before sending them (0 when within the rate)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def _refusal(status: int, retry_after_s: int, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    title = "Too Many Requests" if status == 429 else "Service Unavailable"
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    return ([(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
             (b"retry-after", str(retry_after_s).encode())], body)


class PeerLimitsMiddleware:
    """ASGI middleware enforcing ``[peer_limits]`` on the network face (see the module docstring).

    ``on_refused`` is called with the limit's name (``peer`` or ``total``) for each refusal (metrics).
    """

    def __init__(self, app: ASGIApp, limits: PeerLimitSettings,
                 on_refused: Callable[[str], None] = lambda _: None) -> None:
        self.app = app
        self.limits = limits
        self.on_refused = on_refused
        self._in_progress: dict[str, int] = {}
        self._total = 0
        self._buckets: dict[str, TokenBucket] = {}

    def _admit(self, peer: str) -> str | None:
        """Count the request in, or name the limit it exceeds (single event loop: no lock needed)."""
        lim = self.limits
        if lim.max_total_requests and self._total >= lim.max_total_requests:
            return "total"
        if lim.max_concurrent_requests and self._in_progress.get(peer, 0) >= lim.max_concurrent_requests:
            return "peer"
        self._total += 1
        self._in_progress[peer] = self._in_progress.get(peer, 0) + 1
        return None

    def _release(self, peer: str) -> None:
        self._total -= 1
        left = self._in_progress[peer] - 1
        if left:
            self._in_progress[peer] = left
        else:
            del self._in_progress[peer]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = str(client[0]) if client else "?"
        exceeded = self._admit(peer)
        if exceeded is not None:
            self.on_refused(exceeded)
            status = 429 if exceeded == "peer" else 503
            detail = (f"more than {self.limits.max_concurrent_requests} requests in progress from this node"
                      if exceeded == "peer" else "the node serves as many requests as it can; try again later")
            headers, body = _refusal(status, self.limits.retry_after_s, detail)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        paced = send
        if self.limits.max_bytes_per_s:
            bucket = self._buckets.setdefault(peer, TokenBucket(self.limits.max_bytes_per_s))

            async def paced_send(message: Message) -> None:
                if message["type"] == "http.response.body":
                    delay = bucket.reserve(len(message.get("body", b"")))
                    if delay > 0:
                        await asyncio.sleep(delay)
                await send(message)

            paced = paced_send
        try:
            await self.app(scope, receive, paced)
        finally:
            self._release(peer)


class OutboundLimiter:
    """Per source host: a concurrency cap shared by every retrieval of the node, and read pacing."""

    def __init__(self, limits: PeerLimitSettings) -> None:
        self.max_concurrent = limits.outbound_max_concurrent
        self.max_bytes_per_s = limits.outbound_max_bytes_per_s
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._buckets: dict[str, TokenBucket] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s request slots for the block (waits while they are all taken)."""
        if not self.max_concurrent:
            yield
            return
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.max_concurrent))
        with semaphore:
            yield

    def pace(self, host: str, amount: int) -> None:
        """Sleep as needed so that reads from ``host`` stay within the bandwidth cap."""
        if not self.max_bytes_per_s:
            return
        with self._lock:
            bucket = self._buckets.setdefault(host, TokenBucket(self.max_bytes_per_s))
        delay = bucket.reserve(amount)
        if delay > 0:
            time.sleep(delay)
