"""Deterministic crash points, for the crash-safety acceptance tests (not for production).

The node reads ``publish.crash_point`` (``DRIMBOX_PUBLISH__CRASH_POINT``) at start-up; when the
named point is reached for the ``publish.crash_after``-th time, the process ends at once with
``os._exit`` — no ``finally``, no flush, no atexit, like a power cut or a SIGKILL at that exact
instruction. The tests run the node as a child process with one point selected, then restart it
without and check that nothing was lost or published twice.
"""

from __future__ import annotations

import os
import sys
import threading
from enum import StrEnum

__all__ = ["CRASH_EXIT_STATUS", "CrashPlan", "CrashPoint"]

CRASH_EXIT_STATUS = 86
"""Exit status of a deliberate crash (tests tell it from a genuine failure)."""


class CrashPoint(StrEnum):
    """Where the process may be made to die (DESIGN F1/F3, issue #5 acceptance)."""

    BEFORE_COMMIT = "before-commit"
    """The report is parsed and its job inserted, but the transaction is not committed: no ACK."""
    BEFORE_ACK = "before-ack"
    """The job is committed (durable) but :meth:`Outbox.enqueue` has not returned: no ACK."""
    AFTER_SEND = "after-send"
    """ITI-41 was sent and answered, but the answer is not stored."""
    BEFORE_DONE = "before-done"
    """The registry's success is stored, but the job is not marked done."""
    AFTER_DEPRECATE = "after-deprecate"
    """Patient identity change: the previous patient's KOS is deprecated (ITI-57), the new one not sent."""


class CrashPlan:
    """The selected crash point (or none); :meth:`reach` is called at every point."""

    def __init__(self, point: CrashPoint | None = None, after: int = 1) -> None:
        self.point = point
        self.after = after
        self._hits = 0
        self._lock = threading.Lock()

    def reach(self, point: CrashPoint) -> None:
        """Die here if this is the selected point and its turn has come."""
        if point is not self.point:
            return
        with self._lock:
            self._hits += 1
            if self._hits < self.after:
                return
        sys.stderr.write(f"drimbox: deliberate crash at {point.value}\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_STATUS)
