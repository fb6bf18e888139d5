"""The read-through cache: tee on first retrieval, disk on the next, completeness rules, prefetch."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gwtest import Corpus
from pydicom import Dataset

from dicomweb_gateway import (
    BackendUnavailable,
    CachingStore,
    FileStore,
    InstanceFile,
    NotFound,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
    create_app,
    prefetch,
)


class CountingUpstream:
    """A PACS stand-in: a file store that counts retrievals and can be switched off."""

    def __init__(self, inner: FileStore) -> None:
        self.inner = inner
        self.retrievals = 0
        self.searches = 0
        self.down = False
        self.yielded = 0
        self.gate: threading.Event | None = None

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        if self.down:
            raise BackendUnavailable("PACS down")
        self.searches += 1
        return self.inner.search(query)

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        if self.down:
            raise BackendUnavailable("PACS down")
        self.retrievals += 1
        found = self.inner.instances(target)
        if not found:
            raise NotFound("upstream has no such study")

        def gen() -> Iterator[InstanceFile]:
            for index, instance in enumerate(found):
                if index == 1 and self.gate is not None:
                    assert self.gate.wait(10)
                self.yielded += 1
                yield instance

        return gen()

    def store(self, path: Path) -> StoreOutcome:
        return self.inner.store(path)


@pytest.fixture()
def pacs(tmp_path: Path, corpus: Corpus) -> CountingUpstream:
    """An upstream holding the mammogram and the CT."""
    fs = FileStore(tmp_path / "pacs")
    for f in [*corpus.mammo.files, *corpus.ct.files]:
        fs.add(f)
    return CountingUpstream(fs)


def test_second_retrieval_from_disk(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """The first retrieval goes upstream and fills the cache; the second never touches the upstream."""
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs)  # type: ignore[arg-type]
    target = RetrieveTarget(corpus.mammo.study_instance_uid)
    first = [i.path.read_bytes() for i in cache.retrieve(target)]
    assert pacs.retrievals == 1 and cache.is_complete(target)
    second = [i.path.read_bytes() for i in cache.retrieve(target)]
    assert pacs.retrievals == 1
    assert first == second == [f.read_bytes() for f in corpus.mammo.files]
    series = RetrieveTarget(corpus.mammo.study_instance_uid, corpus.mammo.instances[0].series_instance_uid)
    assert cache.is_complete(series)  # a complete study completes its series


def test_tee_streams_before_upstream_finishes(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """The first instance is handed over (from the cache) while the upstream still holds the rest."""
    pacs.gate = threading.Event()
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs)  # type: ignore[arg-type]
    stream = cache.retrieve(RetrieveTarget(corpus.mammo.study_instance_uid))
    first = next(stream)
    assert pacs.yielded == 1 and first.path.is_relative_to(tmp_path / "cache")
    pacs.gate.set()
    assert len(list(stream)) == len(corpus.mammo.files) - 1


def test_incomplete_retrieval_is_not_complete(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """A retrieval abandoned half-way records nothing: the next one goes upstream again."""
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs)  # type: ignore[arg-type]
    target = RetrieveTarget(corpus.mammo.study_instance_uid)
    stream = cache.retrieve(target)
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert not cache.is_complete(target)
    list(cache.retrieve(target))
    assert pacs.retrievals == 2 and cache.is_complete(target)


def test_eviction_breaks_completeness(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """Losing one member to eviction makes the study incomplete again."""
    cache_fs = FileStore(tmp_path / "cache", max_bytes=corpus.mammo.total_bytes() + corpus.ct.total_bytes() // 2)
    cache = CachingStore(cache_fs, pacs)  # type: ignore[arg-type]
    mammo, ct = RetrieveTarget(corpus.mammo.study_instance_uid), RetrieveTarget(corpus.ct.study_instance_uid)
    list(cache.retrieve(mammo))
    list(cache.retrieve(ct))
    assert not cache.is_complete(mammo)
    list(cache.retrieve(mammo))
    assert pacs.retrievals == 3


def test_revalidation(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """Stale records are checked against the upstream's instance list; a new series forces a refetch;
    an unreachable upstream leaves the cached copy in service."""
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs, revalidate_after_s=0)  # type: ignore[arg-type]
    target = RetrieveTarget(corpus.ct.study_instance_uid)
    list(cache.retrieve(target))
    assert cache.is_complete(target) and pacs.searches == 1  # checked, unchanged
    pacs.down = True
    assert cache.is_complete(target)
    assert len(list(cache.retrieve(target))) == len(corpus.ct.files)  # served while the PACS is down
    pacs.down = False
    pacs.inner.add(_write(tmp_path / "late.dcm", _late_instance(corpus)))
    assert not cache.is_complete(target)
    assert len(list(cache.retrieve(target))) == len(corpus.ct.files) + 1
    assert pacs.retrievals == 2


def _late_instance(corpus: Corpus) -> Dataset:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    ds = dcmread(corpus.ct.files[0])
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _write(path: Path, ds: Dataset) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_prefetch_and_not_found(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """prefetch() fills the cache and reports; a second prefetch is a cache hit; unknown -> NotFound."""
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs)  # type: ignore[arg-type]
    target = RetrieveTarget(corpus.ct.study_instance_uid)
    report = prefetch(cache, target)
    assert (report.instances, report.bytes, report.from_cache) == (len(corpus.ct.files), corpus.ct.total_bytes(), False)
    assert prefetch(cache, target).from_cache
    assert pacs.retrievals == 1
    with pytest.raises(NotFound):
        prefetch(cache, RetrieveTarget("1.2.3.4"))


def test_caching_store_behind_the_gateway(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """Served over HTTP: cold then warm are identical; an unreachable PACS is a 503 with Retry-After."""
    cache = CachingStore(FileStore(tmp_path / "cache"), pacs)  # type: ignore[arg-type]
    with TestClient(create_app(cache)) as c:
        url = f"/dicom-web/studies/{corpus.mammo.study_instance_uid}"
        cold, warm = c.get(url), c.get(url)
        assert cold.status_code == warm.status_code == 200
        assert len(cold.content) == len(warm.content)
        assert pacs.retrievals == 1
        pacs.down = True
        r = c.get(f"/dicom-web/studies/{corpus.ct.study_instance_uid}")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert c.get("/dicom-web/studies").status_code == 503
        assert c.get(url).status_code == 200  # complete in cache: no PACS needed


def test_teed_instances_are_searchable(tmp_path: Path, pacs: CountingUpstream, corpus: Corpus) -> None:
    """Instances taken in behind the client (write-behind, header not parsed then) answer searches
    like stored ones once the writer has committed them."""
    from dicomweb_gateway import QueryLevel

    cache_fs = FileStore(tmp_path / "cache")
    cache = CachingStore(cache_fs, pacs)  # type: ignore[arg-type]
    list(cache.retrieve(RetrieveTarget(corpus.ct.study_instance_uid)))
    assert cache_fs.settle(timeout_s=10)
    for level in (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE):
        matching = Dataset()
        matching.StudyInstanceUID = corpus.ct.study_instance_uid
        query = SearchQuery(level, matching)
        assert [ds.to_json_dict() for ds in cache_fs.search(query)] == [
            ds.to_json_dict() for ds in pacs.inner.search(query)
        ]
    cache_fs.close()
    assert len(FileStore(tmp_path / "cache")) == len(corpus.ct.files)  # durable across a restart
