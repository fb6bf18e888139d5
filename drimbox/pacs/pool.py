"""A small pool of established query associations to one peer.

Opening an association costs a TCP handshake and an A-ASSOCIATE exchange (a few ms on a LAN, far
more across sites or with TLS); a DICOMweb gateway issues many small C-FINDs, so idle
associations are kept for reuse. Each lease gives one association to one thread at a time; an
association comes back to the pool only if it is still established and its last operation ended
cleanly, and at most ``max_idle`` are kept. Peers close idle associations on their own schedule
(Orthanc: ``DicomScpTimeout``), so a lease may find one dead: the client retries once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from drimbox.errors import DimseFailure, InvalidQuery, StudyNotFound
from drimbox.pacs.responses import Link

__all__ = ["AssociationPool", "Lease"]

log = logging.getLogger(__name__)

_CLEAN_ENDINGS = (DimseFailure, InvalidQuery, StudyNotFound)
"""Errors raised after a complete request/response exchange: the association is still usable."""


@dataclass
class Lease:
    """One association lent to one operation."""

    link: Link
    reused: bool
    """Whether it came from the pool (it may have gone stale) rather than freshly opened."""
    broken: bool = False
    """Set by the operation when the association must not be reused."""


def _close(link: Link) -> None:
    assoc = link.assoc
    if assoc.is_established:
        assoc.release()
    else:
        assoc.abort()


class AssociationPool:
    """Idle established associations, at most ``max_idle`` of them (0: no pooling)."""

    def __init__(self, open_association: Callable[[], Link], max_idle: int) -> None:
        self._open = open_association
        self._max_idle = max_idle
        self._idle: list[Link] = []
        self._lock = threading.Lock()
        self._closed = False

    def _take(self) -> Link | None:
        with self._lock:
            while self._idle:
                link = self._idle.pop()
                if link.reusable:
                    return link
                link.assoc.abort()
        return None

    @contextmanager
    def lease(self, *, fresh: bool = False) -> Iterator[Lease]:
        """Borrow an association (a new one with ``fresh``); it returns to the pool on exit."""
        if self._closed:
            raise RuntimeError("the association pool is closed")
        link = None if fresh else self._take()
        lease = Lease(link, True) if link is not None else Lease(self._open(), False)
        try:
            yield lease
        except _CLEAN_ENDINGS:
            raise
        except BaseException:
            lease.broken = True
            raise
        finally:
            self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        link = lease.link
        if lease.broken or not link.reusable:
            link.assoc.abort()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(link)
                return
        _close(link)

    @property
    def idle(self) -> int:
        """Associations waiting for reuse."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Release every idle association; leased ones are released when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for link in idle:
            _close(link)
