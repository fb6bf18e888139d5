"""One background thread that runs delayed checks (cheaper than a ``threading.Timer`` per request)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


class Watchdog:
    """Runs ``callback()`` ``delay`` seconds after :meth:`schedule`.

    Its thread starts with the first check and ends after ``idle_s`` seconds without any, so an
    idle client holds no thread (and none outlives the work it watches by more than that).
    """

    def __init__(self, name: str = "drimbox-watchdog", *, idle_s: float = 5.0) -> None:
        self._idle_s = idle_s
        self._name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the watchdog thread) after ``delay`` seconds."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._counter), callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_until = time.monotonic() + self._idle_s
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    if not self._heap and time.monotonic() >= idle_until:
                        self._thread = None
                        return
                    due = self._heap[0][0] if self._heap else idle_until
                    self._cond.wait(max(0.0, due - time.monotonic()))
                if self._closed:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a failed check must not stop the others
                log.exception("watchdog check failed")

    def close(self) -> None:
        """Drop pending checks and stop the thread."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
