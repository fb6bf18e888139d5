"""Validated contextual calls, kept on the node between the call and the study page.

The call arrives before the user has logged in, and its answer is a redirect: the traits cannot go
in the URL (an INS in a URL ends up in browser history, proxies and logs), so the node keeps them
here under a random id (128 bits, unguessable) and redirects to ``/portal/patients/{id}``.

The first authenticated user who opens the page *claims* the call; the id then works for them only,
so a leaked URL shows nothing to anyone else. Calls expire (the browser session lifetime by default)
and the table is bounded (oldest dropped first). It lives in memory: after a restart the user calls
again from their software, which is what they would do after their session expired anyway.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from drimbox.retrieve.model import PatientRecord
from drimbox.web.ins import ContextualCall

__all__ = ["ContextualCalls", "StoredCall"]


@dataclass
class StoredCall:
    """A contextual call waiting for (or claimed by) its user; ``record`` caches the last look-up."""

    id: str
    call: ContextualCall
    created: float
    expires: float
    source: str | None = None
    owner: str | None = None
    record: PatientRecord | None = None
    record_at: float = 0.0


class ContextualCalls:
    """The calls of this node, by id (thread-safe)."""

    def __init__(self, *, ttl_s: float = 8 * 3600.0, max_calls: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.max_calls = max_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: OrderedDict[str, StoredCall] = OrderedDict()

    def add(self, call: ContextualCall, *, source: str | None = None) -> StoredCall:
        """Keep ``call``; return it with its new id."""
        now = self._clock()
        stored = StoredCall(secrets.token_urlsafe(16), call, now, now + self.ttl_s, source)
        with self._lock:
            self._purge(now)
            self._calls[stored.id] = stored
            while len(self._calls) > self.max_calls:
                self._calls.popitem(last=False)
        return stored

    def claim(self, call_id: str, subject: str) -> StoredCall | None:
        """The call for ``subject``: claimed on first use; ``None`` when unknown, expired or someone else's."""
        now = self._clock()
        with self._lock:
            self._purge(now)
            stored = self._calls.get(call_id)
            if stored is None:
                return None
            if stored.owner is None:
                stored.owner = subject
            return stored if stored.owner == subject else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def _purge(self, now: float) -> None:
        expired = [k for k, v in self._calls.items() if v.expires <= now]
        for key in expired:
            del self._calls[key]
