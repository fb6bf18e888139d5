"""Prefetch: bring studies into the node cache ahead of their reading (``POST /api/prefetch``).

A second reader's priors, or a study announced for tomorrow's list, are retrieved from the PACS
into the cache in the background, one study at a time (a prefetch must not compete with the
radiologists' own retrievals for the PACS), so that opening them later is served from disk.
Jobs are kept in memory (the last ``keep`` of them) and report progress per instance.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from dicomweb_gateway import CachingStore, GatewayError, InstanceFile, RetrieveTarget

__all__ = ["PrefetchJob", "PrefetchJobs", "StudyPrefetch", "prefetch_study"]

State = Literal["queued", "running", "done", "failed"]


@dataclass
class StudyPrefetch:
    """Progress of one study."""

    study_uid: str
    state: State = "queued"
    instances: int = 0
    bytes: int = 0
    from_cache: bool = False
    """It was complete in the cache already (nothing asked of the PACS)."""
    error: str | None = None


@dataclass
class PrefetchJob:
    """One prefetch request: its studies, in order."""

    id: str
    studies: list[StudyPrefetch]
    created: float = field(default_factory=time.time)

    @property
    def state(self) -> State:
        """``done`` when every study is done, ``failed`` when one failed and none is left to run."""
        states = {s.state for s in self.studies}
        if states & {"queued", "running"}:
            return "running" if states != {"queued"} else "queued"
        return "failed" if "failed" in states else "done"


def prefetch_study(
    store: CachingStore, study_uid: str, on_instance: Callable[[InstanceFile], None] = lambda _: None
) -> bool:
    """Retrieve one study through ``store`` (so into its cache); return whether it was cached already.

    Same as :func:`dicomweb_gateway.prefetch`, with a callback per instance for progress.
    Raises what the store raises (``NotFound``, ``BackendUnavailable``…).
    """
    target = RetrieveTarget(study_uid)
    already = store.is_complete(target)
    for instance in store.retrieve(target):
        on_instance(instance)
    return already


class _Stopping(Exception):
    """The node is stopping: abandon the study in progress (its retrieval is cancelled)."""


class PrefetchJobs:
    """Background prefetch jobs over ``store`` (one study at a time), looked up by id."""

    def __init__(self, store: CachingStore, *, keep: int = 200) -> None:
        self._store = store
        self._keep = keep
        self._jobs: OrderedDict[str, PrefetchJob] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")

    def submit(self, study_uids: Sequence[str]) -> PrefetchJob:
        """Queue the studies (duplicates dropped); return the job at once."""
        job = PrefetchJob(uuid.uuid4().hex, [StudyPrefetch(uid) for uid in dict.fromkeys(study_uids)])
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        self._worker.submit(self._run, job)
        return job

    def get(self, job_id: str) -> PrefetchJob | None:
        """The job, if it is still remembered."""
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: PrefetchJob) -> None:
        for study in job.studies:
            study.state = "running"

            def count(instance: InstanceFile, study: StudyPrefetch = study) -> None:
                study.instances += 1
                study.bytes += instance.size
                if self._stopping.is_set():
                    raise _Stopping

            try:
                if self._stopping.is_set():
                    raise _Stopping
                study.from_cache = prefetch_study(self._store, study.study_uid, count)
            except _Stopping:
                study.state, study.error = "failed", "the node stopped before the study was complete"
            except GatewayError as exc:
                study.state, study.error = "failed", f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # reported in the job rather than lost in a worker thread
                study.state, study.error = "failed", f"unexpected {type(exc).__name__}: {exc}"
            else:
                study.state = "done"

    def close(self) -> None:
        """Stop: queued jobs are dropped, the study in progress is abandoned at its next instance
        (its retrieval cancelled), before the cache it writes to is closed."""
        self._stopping.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
