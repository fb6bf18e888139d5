"""The outbox worker: threads that claim jobs, run them, and settle them.

One process at a time may run workers on an outbox file: :class:`OutboxWorker` takes an exclusive
``flock`` on ``<outbox>.lock`` for its lifetime. That is what makes :meth:`Outbox.recover` safe at
start-up (a job still in flight can only belong to a dead process) and lets a restarted node resume
at once instead of waiting for leases to expire. The lock dies with the process, even on SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import structlog

from drimbox.errors import DrimboxError
from drimbox.ops.request_id import bound_request_id
from drimbox.publish.errors import PublishError
from drimbox.publish.jobs import Job, JobState
from drimbox.publish.outbox import JobHandle, LeaseLost, Outbox

__all__ = ["JobRunner", "OutboxLocked", "OutboxWorker"]

log = structlog.get_logger(__name__)

JobRunner = Callable[[JobHandle], None]
"""Runs one claimed job to its end: settles it with ``complete`` or raises (the worker settles the failure)."""


class OutboxLocked(DrimboxError):
    """Another process already runs the workers of this outbox."""


class OutboxWorker:
    """``threads`` worker threads over one outbox.

    Parameters
    ----------
    outbox:
        The queue.
    run:
        What to do with a claimed job (the publication pipeline).
    threads:
        Jobs of different exams run in parallel; the jobs of one exam never do (see :meth:`Outbox.claim`).
    lease_s:
        How long a claim holds without progress; each recorded step extends it.
    poll_s:
        Longest sleep between looks at the queue (jobs enqueued by this process wake the workers at once).
    """

    def __init__(
        self, outbox: Outbox, run: JobRunner, *, threads: int = 2, lease_s: float = 300.0, poll_s: float = 1.0,
        on_done: Callable[[Job], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self._run = run
        self._on_done = on_done
        """Called after a job ran to its end (metrics: publication latency)."""
        self._threads_wanted = threads
        self.lease_s = lease_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock_file: IO[bytes] | None = None
        self._instance = uuid.uuid4().hex[:8]

    def start(self) -> None:
        """Take the worker lock, make abandoned jobs claimable, start the threads."""
        lock_path = Path(f"{self.outbox.path}.lock")
        handle = lock_path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise OutboxLocked(f"{self.outbox.path}: another process runs its publication workers") from exc
        self._lock_file = handle
        recovered = self.outbox.recover()
        if recovered:
            log.warning("outbox: jobs in flight at the last stop are resumed", count=recovered)
        self._stop.clear()
        for index in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, args=(f"{os.getpid()}-{self._instance}-{index}",),
                                      name=f"outbox-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait for the jobs in progress to settle; release the lock."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                handle = self.outbox.claim(owner, self.lease_s)
            except Exception:  # a locked or broken database must not kill the thread
                log.exception("outbox: claim failed")
                self._stop.wait(self.poll_s)
                continue
            if handle is None:
                self.outbox.wait_for_work(self.poll_s)
                continue
            self.run_one(handle)

    def run_one(self, handle: JobHandle) -> None:
        """Run one claimed job and settle a failure (public for tests and ``drimbox publish --now``)."""
        job = handle.job
        try:
            # Outside any request: the job's own id is the request id of its registry calls and logs.
            with bound_request_id(f"job-{job.id}"):
                self._run(handle)
        except LeaseLost:
            log.warning("outbox: lease lost, another worker has the job", job=job.id)
        except PublishError as exc:
            self._settle(handle, str(exc), permanent=exc.permanent)
        except Exception as exc:  # a bug or an unexpected library error: retried, bounded, then dead letter
            log.exception("outbox: job failed unexpectedly", job=job.id)
            self._settle(handle, f"{type(exc).__name__}: {exc}", permanent=False)
        else:
            if self._on_done is not None:
                self._on_done(job)

    def _settle(self, handle: JobHandle, error: str, *, permanent: bool) -> None:
        try:
            state = handle.fail(error, permanent=permanent)
        except LeaseLost:
            return
        level = log.error if state is JobState.DEAD_LETTER else log.warning
        level("outbox: job not done", job=handle.job.id, kind=handle.job.kind.value, state=state.value,
              attempts=handle.job.attempts, error=error)
