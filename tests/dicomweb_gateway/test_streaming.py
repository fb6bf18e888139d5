"""Streaming proofs: the first part leaves before the backend fetches the last instance; iterators
are closed when the client goes away or when QIDO has enough results."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from gwtest import Corpus, LiveServer
from pydicom import Dataset

from dicomweb_gateway import FileStore, InstanceFile, RetrieveTarget, SearchQuery, StoreOutcome, create_app
from dicomweb_gateway.multipart import MultipartParser, PartEnd
from dicomweb_gateway.negotiation import parse_accept


class GatedStore:
    """Delegates to a file store, but holds the last instance back until released."""

    def __init__(self, inner: FileStore) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.closed = threading.Event()
        self.last_yielded = threading.Event()
        self.released_by_client = False
        self.searched = 0
        self.search_closed = threading.Event()

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        def gen() -> Iterator[Dataset]:
            try:
                for ds in self.inner.search(query):
                    self.searched += 1
                    yield ds
            finally:
                self.search_closed.set()

        return gen()

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        instances = self.inner.instances(target)

        def gen() -> Iterator[InstanceFile]:
            try:
                for index, instance in enumerate(instances):
                    if index == len(instances) - 1:
                        self.released_by_client = self.release.wait(10)
                        self.last_yielded.set()
                    yield instance
            finally:
                self.closed.set()

        return gen()

    def store(self, path: Path) -> StoreOutcome:
        return self.inner.store(path)


def _boundary(content_type: str) -> str:
    value = parse_accept(content_type)[0].param("boundary")
    assert value
    return value


def test_first_part_before_last_instance(store: FileStore, corpus: Corpus) -> None:
    """Over real HTTP, the client has a complete first part while the backend still holds the last."""
    gated = GatedStore(store)
    with LiveServer(create_app(gated)) as server, httpx.Client(timeout=20) as http:  # type: ignore[arg-type]
        url = f"{server.url}/studies/{corpus.mammo.study_instance_uid}"
        with http.stream("GET", url, headers={"Accept": 'multipart/related; type="application/dicom"'}) as r:
            parser = MultipartParser(_boundary(r.headers["content-type"]))
            parts = 0
            for chunk in r.iter_raw(65536):
                events = parser.feed(chunk)
                ended = sum(isinstance(e, PartEnd) for e in events)
                if ended and parts == 0:
                    assert not gated.last_yielded.is_set(), "the last instance was fetched before part 1 arrived"
                    gated.release.set()
                parts += ended
            parser.close()
    assert parts == 4
    assert gated.released_by_client
    assert gated.closed.is_set()


def test_client_disconnect_closes_backend_iterator(store: FileStore, corpus: Corpus) -> None:
    """A client that hangs up after the first chunk makes the gateway close the backend's iterator."""
    gated = GatedStore(store)
    with LiveServer(create_app(gated)) as server, httpx.Client(timeout=20) as http:  # type: ignore[arg-type]
        url = f"{server.url}/studies/{corpus.mammo.study_instance_uid}"
        with http.stream("GET", url) as r:
            next(r.iter_raw(1024))
        assert gated.closed.wait(10)
        gated.release.set()


def test_qido_stops_the_search_early(store: FileStore) -> None:
    """With limit=1 the backend yields at most two results (one to know there are more), then is closed."""
    gated = GatedStore(store)
    with TestClient(create_app(gated)) as c:  # type: ignore[arg-type]
        r = c.get("/dicom-web/instances", params={"limit": "1"})
    assert len(r.json()) == 1
    assert "warning" in r.headers
    assert gated.searched == 2
    assert gated.search_closed.is_set()
