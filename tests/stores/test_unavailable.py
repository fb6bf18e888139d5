"""A PACS that does not answer: 503 with Retry-After on every transaction, quickly, never 500 or a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dicomweb_gateway import BackendError, BackendUnavailable, DicomStore, NotFound, create_app
from drimbox import errors
from drimbox.config import DimseSettings, LocalAE, RemoteAE
from drimbox.devnet.ports import free_port
from drimbox.pacs import PacsClient
from drimbox.stores import DimseStore, OrthancStore, Spool
from drimbox.stores.errors import translate
from drimbox.testdata import GeneratedStudy

MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@pytest.fixture(params=["dimse-refused", "orthanc-refused", "dimse-silent", "orthanc-silent"])
def dead_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DicomStore]:
    """A store whose PACS refuses connections, or accepts them and never answers."""
    spool = Spool(tmp_path / "spool")
    kind, how = request.param.split("-")
    listener = None
    if how == "silent":  # a listening socket nobody serves: connects, then silence
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    else:
        port = free_port("127.0.0.1")
    if kind == "orthanc":
        store: DicomStore = OrthancStore(f"http://127.0.0.1:{port}", spool, timeout_s=1.5, retry_after_s=11)
    else:
        remote = RemoteAE(aet="NOBODY", host="127.0.0.1", port=port, timeout_s=1.5)
        dimse = DimseSettings(acse_timeout_s=1.5, connect_timeout_s=1.5, network_timeout_s=1.5)
        store = DimseStore(PacsClient(LocalAE(aet="DRIMBOX"), remote, dimse, fsync=False), spool, retry_after_s=11)
    yield store
    if listener is not None:
        listener.close()


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/dicom-web/studies", {}),
        ("GET", "/dicom-web/studies/1.2.3/series", {}),
        ("GET", "/dicom-web/studies/1.2.3", {"Accept": MULTIPART}),
        ("GET", "/dicom-web/studies/1.2.3/metadata", {}),
        ("GET", "/dicom-web/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/1", {}),
    ],
    ids=["qido-studies", "qido-series", "wado-study", "wado-metadata", "wado-frames"],
)
def test_503_with_retry_after(dead_store: DicomStore, method: str, path: str, headers: dict[str, str]) -> None:
    started = time.monotonic()
    with TestClient(create_app(dead_store)) as client:
        response = client.request(method, path, headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "11"
    assert time.monotonic() - started < 10


def test_stow_to_a_dead_pacs_is_503(dead_store: DicomStore, ct: GeneratedStudy) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + ct.files[0].read_bytes()
            + f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    with TestClient(create_app(dead_store)) as client:
        response = client.post("/dicom-web/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 503
    assert response.headers["retry-after"]


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (errors.PacsUnreachable("x"), BackendUnavailable, 503),
        (errors.PacsTimeout("x"), BackendUnavailable, 503),
        (errors.AssociationAborted("x"), BackendUnavailable, 503),
        (errors.DimseFailure("x", status=0xA702), BackendUnavailable, 503),
        (errors.DimseFailure("x", status=0xA801), BackendError, 502),
        (errors.AssociationRejected("x"), BackendError, 502),
        (errors.RetrieveIncomplete("x", failed=1), BackendError, 502),
        (errors.StudyNotFound("x", study_instance_uid="1.2"), NotFound, 404),
    ],
)
def test_one_translation_of_the_bridge_errors(error: errors.DrimboxError, expected: type, status: int) -> None:
    from dicomweb_gateway.errors import status_for

    translated = translate(error, 9)
    assert type(translated) is expected
    assert status_for(translated) == status  # type: ignore[arg-type]
