"""Hand received instances from DIMSE threads to the caller's generator, with back-pressure.

A retrieval runs in a worker thread (C-GET: the association's own C-STORE handler; C-MOVE: the
node SCP's handler threads) while the caller iterates. Only :class:`RetrievedInstance` records
(paths on disk) cross over, through a bounded buffer: when the caller is slow, the producer
blocks, which holds back the C-STORE response and so slows the PACS down instead of filling the
disk. When the caller goes away (:meth:`InstanceChannel.close`), producers stop blocking at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from drimbox.pacs.models import RetrievedInstance

__all__ = ["InstanceChannel", "RetrieveOutcome"]


@dataclass(frozen=True)
class RetrieveOutcome:
    """How the C-GET/C-MOVE request itself ended (its final response)."""

    status: int | None
    """Final status, ``None`` when no final response came (error raised instead)."""
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_sop_instance_uids: tuple[str, ...] = ()
    counts_reported: bool = False
    """Whether the final response carried the sub-operation counts (optional for some statuses)."""
    error: BaseException | None = None
    """What the worker raised (association aborted, timeout, failure status...)."""


class InstanceChannel:
    """A bounded, closable hand-over of instances plus the final outcome of the request.

    Parameters
    ----------
    maxsize:
        Instances buffered before producers block.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._items: deque[RetrievedInstance] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._outcome: RetrieveOutcome | None = None
        self._finished_at = 0.0
        self._linger_s = 0.0
        self._needed = 0
        self.received = 0
        """Instances put so far."""

    # -- producer side ---------------------------------------------------------------------------

    def put(self, instance: RetrievedInstance) -> bool:
        """Hand ``instance`` over, blocking while the buffer is full.

        Returns ``False`` (immediately) once the consumer has closed the channel.
        """
        with self._cond:
            while len(self._items) >= self._maxsize and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(instance)
            self.received += 1
            self._cond.notify_all()
            return True

    def finish(self, outcome: RetrieveOutcome, *, needed: int = 0, linger_s: float = 0.0) -> None:
        """Record the request's outcome: no more instances come from the request's own thread.

        With ``needed`` and ``linger_s`` (C-MOVE), the consumer keeps waiting up to ``linger_s``
        seconds for late instances until ``needed`` have been received.
        """
        with self._cond:
            self._outcome = outcome
            self._finished_at = time.monotonic()
            self._needed = needed
            self._linger_s = linger_s
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether the consumer has gone."""
        return self._closed

    # -- consumer side ---------------------------------------------------------------------------

    @property
    def outcome(self) -> RetrieveOutcome | None:
        """The request's outcome once finished."""
        return self._outcome

    def _done(self) -> bool:
        if self._outcome is None or self._items:
            return False
        if self.received >= self._needed:
            return True
        return time.monotonic() >= self._finished_at + self._linger_s

    def get(self, timeout: float | None = None) -> RetrievedInstance | None:
        """The next instance; ``None`` when the request is finished and nothing more is due, or
        when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    return item
                if self._done():
                    return None
                wakeups = [t for t in (deadline, self._linger_deadline()) if t is not None]
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return None
                self._cond.wait(max(0.0, min(wakeups) - now) if wakeups else None)

    def _linger_deadline(self) -> float | None:
        return None if self._outcome is None else self._finished_at + self._linger_s

    def close(self) -> None:
        """The consumer is gone: wake and release every producer."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
