"""TCP_NODELAY on every socket the node opens or accepts, set before the first PDU."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import evt
from pynetdicom.events import Event

from drimbox.config import DimseSettings, LocalAE, RemoteAE, StorageSettings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.pacs import MoveMediator, NodeScp, PacsClient, QueryLevel
from drimbox.pacs.connect import Connector
from drimbox.pacs.contexts import query_contexts
from drimbox.pacs.sockets import tune_socket
from drimbox.testdata import GeneratedStudy

from .peers import Dcmtk


class _Spy:
    """Wraps the default tuning and records, per socket, the option value and whether a PDU went first."""

    def __init__(self) -> None:
        self.nodelay: list[int] = []
        self.pdus_sent = 0
        self.pdus_sent_before_tuning: list[int] = []

    def tune(self, sock: socket.socket) -> None:
        tune_socket(sock)
        self.pdus_sent_before_tuning.append(self.pdus_sent)
        self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def on_pdu_sent(self, event: Event) -> None:
        self.pdus_sent += 1


def test_requestor_socket_has_nodelay_before_the_associate_request(
    node_ae: LocalAE, orthanc_a: OrthancProcess, dimse_settings: DimseSettings
) -> None:
    spy = _Spy()
    connector = Connector(node_ae, orthanc_a.remote_ae(), dimse_settings, tune=spy.tune)
    link = connector.associate(query_contexts(), evt_handlers=[(evt.EVT_PDU_SENT, spy.on_pdu_sent)])
    try:
        assert spy.pdus_sent >= 1  # the A-ASSOCIATE-RQ
        assert spy.nodelay == [1]
        assert spy.pdus_sent_before_tuning == [0]
    finally:
        link.assoc.release()


@pytest.fixture()
def spied_scp(dimse_settings: DimseSettings, tmp_path: Path) -> Iterator[tuple[LocalAE, _Spy]]:
    """A node SCP on its own port whose socket tuning is observed."""
    spy = _Spy()
    ae = LocalAE(aet="SPIED", host="127.0.0.2", port=free_port("127.0.0.2"))
    storage = StorageSettings(data_dir=tmp_path)
    with NodeScp(ae, dimse_settings, storage, MoveMediator(quarantine_dir=storage.quarantine_dir), tune=spy.tune):
        yield ae, spy


def test_accepted_sockets_have_nodelay(dcmtk: Dcmtk, spied_scp: tuple[LocalAE, _Spy]) -> None:
    ae, spy = spied_scp
    for _ in range(2):
        result = dcmtk("echoscu", "-aec", ae.aet, ae.host, str(ae.port))
        assert result.returncode == 0, result.stderr
    assert spy.nodelay == [1, 1]  # set from EVT_CONN_OPEN, which pynetdicom fires before starting the reactor


def test_find_round_trip_does_not_wait_for_delayed_acks(
    node_ae: LocalAE, orthanc_a_clean: OrthancProcess, dimse_settings: DimseSettings, mg_study: GeneratedStudy
) -> None:
    """Without TCP_NODELAY a C-FIND (pending + final response) stalls ~40 ms on a delayed ACK."""
    orthanc_a_clean.upload(mg_study.files)
    query = {"StudyInstanceUID": mg_study.study_instance_uid, "PatientID": None}
    remote: RemoteAE = orthanc_a_clean.remote_ae()
    with PacsClient(node_ae, remote, dimse_settings) as client:
        client.echo()
        durations = []
        for _ in range(10):
            started = time.perf_counter()
            assert len(list(client.find(QueryLevel.STUDY, query))) == 1
            durations.append(time.perf_counter() - started)
    assert statistics.median(durations) < 0.020
