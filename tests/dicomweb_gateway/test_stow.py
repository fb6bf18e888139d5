"""STOW-RS round trips and every status of PS3.18 Table 10.5.3-1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from fastapi.testclient import TestClient
from gwtest import Corpus, LiveServer
from pydicom import dcmread

from dicomweb_gateway import FailureReason, FileStore, GatewaySettings, StoreOutcome, create_app
from dicomweb_gateway.backend import SearchQuery, WarningReason
from dicomweb_gateway.errors import BackendUnavailable
from dicomweb_gateway.multipart import Part, iter_multipart

BOUNDARY = "stow-test-boundary"
MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def body_of(*bodies: bytes) -> bytes:
    return b"".join(iter_multipart([Part("application/dicom", b) for b in bodies], BOUNDARY))


@pytest.fixture()
def stow_client(empty_store: FileStore) -> Iterator[TestClient]:
    """A gateway over an empty store."""
    with TestClient(create_app(empty_store)) as c:
        yield c


def codes(sequence: list[dict[str, object]], tag: str = "00081197") -> list[int]:
    return [item[tag]["Value"][0] for item in sequence]  # type: ignore[index]


def test_round_trip_with_dicomweb_client(empty_store: FileStore, corpus: Corpus) -> None:
    """dicomweb-client stores a study over real HTTP; it is then searchable and retrievable, identical."""
    with LiveServer(create_app(empty_store)) as server:
        dwc = DICOMwebClient(server.url, session=requests.Session())
        datasets = [dcmread(f) for f in corpus.mammo.files]
        response = dwc.store_instances(datasets)
        assert len(response.ReferencedSOPSequence) == 4
        assert response.RetrieveURL == f"{server.url}/studies/{corpus.mammo.study_instance_uid}"
        assert "FailedSOPSequence" not in response
        found = dwc.search_for_instances(study_instance_uid=corpus.mammo.study_instance_uid)
        assert len(found) == 4
        back = {str(ds.SOPInstanceUID): ds for ds in dwc.retrieve_study(corpus.mammo.study_instance_uid)}
        assert all(back[str(ds.SOPInstanceUID)].PixelData == ds.PixelData for ds in datasets)


def test_200_all_stored(stow_client: TestClient, corpus: Corpus) -> None:
    """Every instance stored: 200 and ReferencedSOPSequence with RetrieveURLs."""
    r = stow_client.post("/dicom-web/studies", content=body_of(*(f.read_bytes() for f in corpus.ct.files)),
                         headers={"Content-Type": MULTIPART})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom+json"
    refs = r.json()["00081199"]["Value"]
    assert len(refs) == len(corpus.ct.files)
    assert refs[0]["00081190"]["Value"][0].startswith(
        f"http://testserver/dicom-web/studies/{corpus.ct.study_instance_uid}"
    )


def test_202_partial(stow_client: TestClient, corpus: Corpus) -> None:
    """One good instance, one unreadable part: 202 with both sequences."""
    r = stow_client.post("/dicom-web/studies", content=body_of(corpus.ct.files[0].read_bytes(), b"not dicom"),
                         headers={"Content-Type": MULTIPART})  # fmt: skip
    assert r.status_code == 202
    assert len(r.json()["00081199"]["Value"]) == 1
    assert codes(r.json()["00081198"]["Value"]) == [FailureReason.CANNOT_UNDERSTAND]
    assert "not a readable DICOM" in r.headers["warning"]


def test_409_nothing_stored(stow_client: TestClient, corpus: Corpus) -> None:
    """Wrong study in the URL and garbage: 409 with failure reasons."""
    url = f"/dicom-web/studies/{corpus.mr_jpegls.study_instance_uid}"
    r = stow_client.post(url, content=body_of(corpus.ct.files[0].read_bytes()), headers={"Content-Type": MULTIPART})
    assert r.status_code == 409
    failed = r.json()["00081198"]["Value"]
    assert codes(failed) == [FailureReason.PROCESSING_FAILURE]
    assert failed[0]["00081155"]["Value"] == [corpus.ct.instances[0].sop_instance_uid]
    r = stow_client.post(
        "/dicom-web/studies", content=body_of(b"junk", b"more junk"), headers={"Content-Type": MULTIPART}
    )
    assert r.status_code == 409
    assert codes(r.json()["00081198"]["Value"]) == [FailureReason.CANNOT_UNDERSTAND] * 2


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ('multipart/related; type="application/dicom"', body_of(b"x"), 400),  # no boundary
        (MULTIPART, body_of(b"abc")[:-10], 400),  # truncated
        (MULTIPART, f"--{BOUNDARY}\r\nbroken header\r\n\r\nx\r\n--{BOUNDARY}--".encode(), 400),
        (MULTIPART, f"--{BOUNDARY}--\r\n".encode(), 400),  # no instance
        (MULTIPART, b"", 400),
        ("application/dicom", b"x", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', b"", 415),
        ("", b"", 415),
    ],
)
def test_malformed_requests(stow_client: TestClient, content_type: str, body: bytes, status: int) -> None:
    """400 for a bad body, 415 for another media type."""
    headers = {"Content-Type": content_type} if content_type else {}
    r = stow_client.post("/dicom-web/studies", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_413_limits(empty_store: FileStore, corpus: Corpus) -> None:
    """The configured size and part-count limits."""
    data = corpus.ct.files[0].read_bytes()
    with TestClient(create_app(empty_store, GatewaySettings(max_stow_bytes=len(data)))) as c:
        assert (
            c.post("/dicom-web/studies", content=body_of(data), headers={"Content-Type": MULTIPART}).status_code == 413
        )
    with TestClient(create_app(empty_store, GatewaySettings(max_stow_parts=1))) as c:
        r = c.post("/dicom-web/studies", content=body_of(data, data), headers={"Content-Type": MULTIPART})
        assert r.status_code == 413


class _Refusing:
    """A store that refuses or warns, or is down."""

    def __init__(self, outcome: StoreOutcome | None) -> None:
        self.outcome = outcome

    def search(self, query: SearchQuery) -> Iterator[object]:
        return iter(())

    def retrieve(self, target: object) -> Iterator[object]:
        return iter(())

    def store(self, path: Path) -> StoreOutcome:
        if self.outcome is None:
            raise BackendUnavailable("PACS unreachable", retry_after_s=7)
        return self.outcome


def test_backend_outcomes(corpus: Corpus) -> None:
    """Backend warnings give 202 with WarningReason; refusals 409; an unreachable PACS 503 + Retry-After."""
    body = body_of(corpus.ct.files[0].read_bytes())
    headers = {"Content-Type": MULTIPART}
    warn = StoreOutcome.warning(WarningReason.COERCION_OF_DATA_ELEMENTS)
    with TestClient(create_app(_Refusing(warn))) as c:  # type: ignore[arg-type]
        r = c.post("/dicom-web/studies", content=body, headers=headers)
        assert r.status_code == 202
        assert r.json()["00081199"]["Value"][0]["00081196"]["Value"] == [WarningReason.COERCION_OF_DATA_ELEMENTS]
    refuse = StoreOutcome.failed(FailureReason.SOP_CLASS_NOT_SUPPORTED, "no CT here")
    with TestClient(create_app(_Refusing(refuse))) as c:  # type: ignore[arg-type]
        r = c.post("/dicom-web/studies", content=body, headers=headers)
        assert r.status_code == 409
        assert codes(r.json()["00081198"]["Value"]) == [FailureReason.SOP_CLASS_NOT_SUPPORTED]
    with TestClient(create_app(_Refusing(None))) as c:  # type: ignore[arg-type]
        r = c.post("/dicom-web/studies", content=body, headers=headers)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"


def test_spool_files_removed(tmp_path: Path, empty_store: FileStore, corpus: Corpus) -> None:
    """Spooled parts are deleted after the request, stored or not."""
    spool = tmp_path / "spool"
    spool.mkdir()
    with TestClient(create_app(empty_store, GatewaySettings(spool_dir=spool))) as c:
        c.post("/dicom-web/studies", content=body_of(corpus.ct.files[0].read_bytes(), b"junk"),
               headers={"Content-Type": MULTIPART})  # fmt: skip
        c.post("/dicom-web/studies", content=body_of(b"abc")[:-5], headers={"Content-Type": MULTIPART})
    assert list(spool.iterdir()) == []
