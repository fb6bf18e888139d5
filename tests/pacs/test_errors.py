"""Every way a peer can fail maps to one clear exception, within a bounded time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drimbox.config import DimseSettings, LocalAE, RemoteAE
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.errors import AssociationAborted, AssociationRejected, DimseFailure, PacsTimeout, PacsUnreachable
from drimbox.pacs import DimseStatus, MoveMediator, PacsClient
from drimbox.testdata import GeneratedStudy

BOUND_S = 5.0
"""Every failure below must surface within this (timeouts of the test settings are 2-3 s)."""


class _Clock:
    def __enter__(self) -> _Clock:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.start


def test_move_to_an_unknown_destination_fails_clearly(
    node_ae: LocalAE,
    dcmqrscp_clean: DcmqrscpProcess,
    dimse_settings: DimseSettings,
    mg_study: GeneratedStudy,
    tmp_path: Path,
) -> None:
    """dcmqrscp lets anyone ask, but only moves to its declared destinations: 0xA801, not a hang."""
    dcmqrscp_clean.load(mg_study.files)
    stranger = LocalAE(aet="STRANGER", host=node_ae.host, port=node_ae.port)
    mediator = MoveMediator(quarantine_dir=tmp_path / "quarantine")
    with PacsClient(stranger, dcmqrscp_clean.remote_ae(), dimse_settings, mediator=mediator) as client:
        with _Clock() as clock, pytest.raises(DimseFailure) as excinfo:
            list(client.move(mg_study.study_instance_uid, dest=tmp_path))
    assert clock.elapsed < BOUND_S
    assert excinfo.value.status == DimseStatus.MOVE_DESTINATION_UNKNOWN
    assert "refused the C-MOVE: 0xA801 (Move destination unknown)" in str(excinfo.value)
    assert "does not know the node's AE title as a move destination" in str(excinfo.value)


def test_move_from_an_undeclared_ae_fails_clearly(
    node_ae: LocalAE,
    orthanc_a_clean: OrthancProcess,
    dimse_settings: DimseSettings,
    mg_study: GeneratedStudy,
    tmp_path: Path,
) -> None:
    """Orthanc only serves declared modalities: it drops a C-MOVE from an unknown AE title."""
    orthanc_a_clean.upload(mg_study.files)
    stranger = LocalAE(aet="STRANGER", host=node_ae.host, port=node_ae.port)
    mediator = MoveMediator(quarantine_dir=tmp_path / "quarantine")
    with PacsClient(node_ae, orthanc_a_clean.remote_ae(), dimse_settings) as declared:
        walk = declared.walk_study(mg_study.study_instance_uid)
    with PacsClient(stranger, orthanc_a_clean.remote_ae(), dimse_settings, mediator=mediator) as client:
        with _Clock() as clock, pytest.raises(AssociationAborted, match="does it know the AE title STRANGER"):
            list(client.move(mg_study.study_instance_uid, dest=tmp_path, walk=walk))
    assert clock.elapsed < BOUND_S


def test_nothing_listening_is_unreachable(node_ae: LocalAE, dimse_settings: DimseSettings) -> None:
    dead = RemoteAE(aet="DEAD", host="127.0.0.1", port=free_port("127.0.0.1"))
    with PacsClient(node_ae, dead, dimse_settings) as client, _Clock() as clock:
        with pytest.raises(PacsUnreachable, match=rf"DEAD@127.0.0.1:{dead.port}: connection refused"):
            client.echo()
    assert clock.elapsed < BOUND_S


@pytest.mark.parametrize("peer", ["orthanc", "dcmqrscp"])
def test_wrong_called_ae_title_is_rejected(
    node_ae: LocalAE, dimse_settings: DimseSettings, request: pytest.FixtureRequest, peer: str
) -> None:
    server: OrthancProcess | DcmqrscpProcess = request.getfixturevalue("orthanc_a" if peer == "orthanc" else "dcmqrscp")
    wrong = RemoteAE(aet="NOT_THE_PACS", host=server.dicom_host, port=server.dicom_port)
    with PacsClient(node_ae, wrong, dimse_settings) as client, _Clock() as clock:
        with pytest.raises(AssociationRejected, match="Called AE title not recognised") as excinfo:
            client.echo()
    assert clock.elapsed < BOUND_S
    assert f"NOT_THE_PACS@{server.dicom_host}:{server.dicom_port} rejected the association from DRIMBOX" in str(
        excinfo.value
    )


@pytest.fixture()
def full_backlog() -> Iterator[tuple[str, int]]:
    """A listening socket whose accept queue is full: a further connect() gets no answer at all."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    waiting = socket.create_connection(listener.getsockname()[:2])  # fills the queue; never accepted
    yield listener.getsockname()[:2]
    waiting.close()
    listener.close()


def test_connect_without_answer_is_bounded(
    node_ae: LocalAE, dimse_settings: DimseSettings, full_backlog: tuple[str, int]
) -> None:
    host, port = full_backlog
    with PacsClient(node_ae, RemoteAE(aet="BUSY", host=host, port=port), dimse_settings) as client, _Clock() as clock:
        with pytest.raises(PacsUnreachable, match=r"no answer to the TCP connection within 2 s"):
            client.echo()
    assert dimse_settings.connect_timeout_s <= clock.elapsed < BOUND_S


@pytest.fixture()
def silent_peer() -> Iterator[tuple[str, int]]:
    """A TCP server that accepts connections and never says anything."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_peer_that_never_answers_times_out(
    node_ae: LocalAE, dimse_settings: DimseSettings, silent_peer: tuple[str, int]
) -> None:
    host, port = silent_peer
    with PacsClient(node_ae, RemoteAE(aet="MUTE", host=host, port=port), dimse_settings) as client, _Clock() as clock:
        with pytest.raises(PacsTimeout, match=r"did not answer the association request within 3 s"):
            client.echo()
    assert dimse_settings.acse_timeout_s <= clock.elapsed < BOUND_S
