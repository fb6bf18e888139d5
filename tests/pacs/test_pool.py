"""Pooled query associations: reused while alive, replaced when the peer dropped them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.events import Event

from drimbox.config import DimseSettings, LocalAE, RemoteAE, StorageSettings
from drimbox.devnet.ports import free_port
from drimbox.pacs import MoveMediator, NodeScp, PacsClient
from drimbox.pacs.contexts import VERIFICATION
from drimbox.pacs.sockets import tune_socket


class _Connections:
    """Counts the connections a client opens (through its socket tuning hook)."""

    def __init__(self) -> None:
        self.opened = 0

    def tune(self, sock: socket.socket) -> None:
        self.opened += 1
        tune_socket(sock)


@pytest.fixture()
def impatient_peer(tmp_path: Path) -> Iterator[RemoteAE]:
    """A node SCP that drops associations idle for more than 0.5 s (its network timeout)."""
    ae = LocalAE(aet="IMPATIENT", host="127.0.0.2", port=free_port("127.0.0.2"))
    settings = DimseSettings(network_timeout_s=0.5)
    storage = StorageSettings(data_dir=tmp_path)
    with NodeScp(ae, settings, storage, MoveMediator(quarantine_dir=storage.quarantine_dir)):
        yield RemoteAE(aet=ae.aet, host=ae.host, port=ae.port)


def test_associations_are_reused_then_replaced_when_dropped(
    node_ae: LocalAE, dimse_settings: DimseSettings, impatient_peer: RemoteAE
) -> None:
    connections = _Connections()
    with PacsClient(node_ae, impatient_peer, dimse_settings, tune=connections.tune) as client:
        for _ in range(5):
            client.echo()
        assert connections.opened == 1  # one pooled association for all five

        time.sleep(1.5)  # the peer aborts the idle association
        client.echo()
        assert connections.opened == 2  # the dead one was discarded, not used


def test_pool_size_zero_opens_one_association_per_request(
    node_ae: LocalAE, dimse_settings: DimseSettings, impatient_peer: RemoteAE
) -> None:
    connections = _Connections()
    no_pool = dimse_settings.model_copy(update={"pool_size": 0})
    with PacsClient(node_ae, impatient_peer, no_pool, tune=connections.tune) as client:
        for _ in range(3):
            client.echo()
    assert connections.opened == 3


@pytest.fixture()
def flaky_peer() -> Iterator[RemoteAE]:
    """A pynetdicom SCP that aborts each association at its second C-ECHO (as if it had dropped it)."""
    echoes: dict[int, int] = {}

    def handle_echo(event: Event) -> int:
        key = id(event.assoc)
        echoes[key] = echoes.get(key, 0) + 1
        if echoes[key] == 2:
            event.assoc.abort()
        return 0

    ae = AE(ae_title="FLAKY")
    ae.add_supported_context(VERIFICATION)
    port = free_port("127.0.0.1")
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, handle_echo)])
    assert server is not None
    yield RemoteAE(aet="FLAKY", host="127.0.0.1", port=port)
    server.shutdown()


def test_a_stale_pooled_association_is_retried_once(
    node_ae: LocalAE, dimse_settings: DimseSettings, flaky_peer: RemoteAE
) -> None:
    connections = _Connections()
    with PacsClient(node_ae, flaky_peer, dimse_settings, tune=connections.tune) as client:
        client.echo()
        client.echo()  # the pooled association is aborted by the peer: retried on a new one
        assert connections.opened == 2
