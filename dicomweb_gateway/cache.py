"""The node cache: a read-through :class:`CachingStore` over an upstream store, and prefetch.

**Complete in cache.** A study (or series) is served from the cache only when the cache holds a
*completeness record* for it whose every member instance is still stored. The record is written
when a retrieval of that study/series from the upstream **ran to its end** (the upstream iterator
was exhausted, so the PACS reported every sub-operation done): its members are the instances the
upstream delivered, and a study record also completes each of its series. A record goes stale
after ``revalidate_after_s``: the next request then asks the upstream for the instance list (an
IMAGE-level search) and, if every listed instance is cached, refreshes the record and still
serves from disk; if the upstream lists instances the cache lacks (a late series), the retrieval
goes upstream again. When the upstream cannot be reached for that check, the cached copy, complete
at its last check, is served. Evicting any member breaks the record.

Retrievals that go upstream are **teed**: each instance the upstream delivers is taken into the
cache by hard link (no copy; :meth:`FileStore.adopt`) and handed to the client at once, from a
link in the cache, while the cache's writer thread makes it durable and indexes it behind the
client's back (crash-safely, in batches: see :mod:`dicomweb_gateway.backends.filesystem`). The
client receives the first instance while the upstream is still sending the others and never waits
for a disk flush. The completeness record is queued after the files, so it is committed once they
are. A request that finds writes still queued waits for them (``settle_s`` at most) before
deciding whether the cache can serve it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import Dataset
from pydicom.tag import Tag

from dicomweb_gateway.backend import DicomStore, InstanceFile, QueryLevel, RetrieveTarget, SearchQuery, StoreOutcome
from dicomweb_gateway.backends.filesystem import FileStore
from dicomweb_gateway.errors import BackendUnavailable, NotFound

__all__ = ["CachingStore", "PrefetchReport", "prefetch"]

_log = logging.getLogger(__name__)


class CachingStore:
    """A :class:`DicomStore` that serves complete studies/series from ``cache``, else ``upstream``.

    Parameters
    ----------
    cache
        The node's on-disk store.
    upstream
        The PACS bridge or remote node; searches and stores always go there (it is the truth).
    revalidate_after_s
        Age after which a completeness record is checked against the upstream's instance list.
    on_lookup
        Called with ``True`` when a retrieve is served from the cache, ``False`` when it goes
        upstream (the node's cache hit rate).
    """

    def __init__(
        self, cache: FileStore, upstream: DicomStore, *, revalidate_after_s: float = 3600.0, settle_s: float = 60.0,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self.on_lookup = on_lookup
        self.cache = cache
        self.upstream = upstream
        self.revalidate_after_s = revalidate_after_s
        self.settle_s = settle_s
        """Longest wait for the cache writer to commit a study still being written before deciding."""

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """Search the upstream (the cache may hold only part of what exists)."""
        return self.upstream.search(query)

    def store(self, path: Path) -> StoreOutcome:
        """Store into the upstream."""
        return self.upstream.store(path)

    def is_complete(self, target: RetrieveTarget) -> bool:
        """Whether ``target`` can be served from the cache alone (see the module docstring)."""
        # Files still queued, of this study or of others whose commits may evict this one's.
        if not self.cache.settle(timeout_s=self.settle_s):
            return False
        if target.sop_instance_uid is not None:
            return bool(self.cache.instances(target))
        record = self.cache.completeness(target)
        if record is None:
            return False
        verified_at, members = record
        if time.time() - verified_at <= self.revalidate_after_s:
            return True
        return self._revalidate(target, set(members))

    def _revalidate(self, target: RetrieveTarget, members: set[str]) -> bool:
        matching = Dataset()
        matching.StudyInstanceUID = target.study_uid
        if target.series_uid is not None:
            matching.SeriesInstanceUID = target.series_uid
        query = SearchQuery(
            level=QueryLevel.IMAGE,
            matching=matching,
            return_keys=(Tag("SOPInstanceUID"), Tag("SeriesInstanceUID")),
            study_uid=target.study_uid,
            series_uid=target.series_uid,
        )
        try:
            listed = {str(ds.SOPInstanceUID) for ds in self.upstream.search(query)}
        except BackendUnavailable:
            _log.info("upstream unreachable; serving %s from cache as of its last check", target)
            return True
        cached = {i.sop_instance_uid for i in self.cache.instances(target)}
        if listed and listed <= cached:
            self.cache.mark_complete(target.study_uid, target.series_uid, sorted(listed))
            return True
        return False

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """From the cache when complete there, else from the upstream, teeing into the cache."""
        if self.is_complete(target):
            if target.sop_instance_uid is not None:
                self._looked_up(True)
                return self.cache.retrieve(target)
            record = self.cache.completeness(target)
            members = set(record[1]) if record else set()
            found = [i for i in self.cache.instances(target) if i.sop_instance_uid in members]
            if found:
                self._looked_up(True)
                return self.cache.serve(target.study_uid, found)
        self._looked_up(False)
        return self._tee(target)

    def _looked_up(self, hit: bool) -> None:
        if self.on_lookup is not None:
            self.on_lookup(hit)

    def _tee(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        received: list[InstanceFile] = []
        upstream = self.upstream.retrieve(target)
        with self.cache.pinned(target.study_uid):
            try:
                for instance in upstream:
                    served = self.cache.adopt(instance)
                    try:
                        received.append(instance)
                        yield replace(instance, path=served)
                    finally:
                        self.cache.release(served)
            finally:
                close = getattr(upstream, "close", None)
                if close is not None:
                    close()
        if not received:
            raise NotFound(f"no such {target.level.value.lower()} upstream")
        # Reached only when the upstream iterator was exhausted: the retrieval is complete.
        if target.sop_instance_uid is None:
            self._record(target, received)

    def _record(self, target: RetrieveTarget, received: list[InstanceFile]) -> None:
        # Queued after the files: committed once they are, and harmless if one of them was not
        # stored (a record whose members are not all indexed does not count).
        self.cache.mark_complete(
            target.study_uid, target.series_uid, [i.sop_instance_uid for i in received], wait=False
        )
        if target.series_uid is None:
            by_series: dict[str, list[str]] = {}
            for instance in received:
                by_series.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
            for series_uid, members in by_series.items():
                self.cache.mark_complete(target.study_uid, series_uid, members, wait=False)


@dataclass(frozen=True)
class PrefetchReport:
    """What a prefetch did."""

    target: RetrieveTarget
    instances: int
    bytes: int
    from_cache: bool


def prefetch(store: CachingStore, target: RetrieveTarget) -> PrefetchReport:
    """Bring ``target`` into the cache (``POST /api/prefetch``, ``drimbox prefetch``).

    Synchronous and blocking: run it in a worker thread or a background task. Raises what the
    upstream raises (:class:`NotFound`, :class:`BackendUnavailable`…).
    """
    already = store.is_complete(target)
    count = size = 0
    for instance in store.retrieve(target):
        count += 1
        size += instance.size
    return PrefetchReport(target, count, size, already)
