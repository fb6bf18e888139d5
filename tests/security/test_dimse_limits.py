"""DIMSE hostile input (issue 7): the node's SCP accepts at most ``dimse.max_associations`` at once, and
refuses a C-STORE whose elements claim more bytes than were sent (0xC000) — the header is checked,
the values are never read — without taking the SCP down.

Real pynetdicom peers on loopback against a real :class:`~drimbox.pacs.NodeScp`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from drimbox.config import DimseSettings, LocalAE, StorageSettings
from drimbox.devnet.ports import free_port
from drimbox.pacs import MoveMediator, NodeScp
from tests.security.test_fuzz import HOSTILE  # the same hostile files as the reader fuzzing

VERIFICATION = "1.2.840.10008.1.1"
HOST = "127.0.0.1"


@pytest.fixture()
def scp(tmp_path: Path) -> Iterator[LocalAE]:
    """The node's SCP limited to two concurrent associations."""
    local = LocalAE(aet="LIMITED", host=HOST, port=free_port(HOST))
    storage = StorageSettings(data_dir=tmp_path)
    dimse = DimseSettings(max_associations=2, network_timeout_s=5, acse_timeout_s=5)
    with NodeScp(local, dimse, storage, MoveMediator(quarantine_dir=storage.quarantine_dir)):
        yield local


def _associate(local: LocalAE) -> Association:
    peer = AE(ae_title="PEER")
    peer.acse_timeout = 5
    peer.add_requested_context(VERIFICATION)
    return peer.associate(local.host, local.port, ae_title=local.aet)


def test_associations_beyond_the_limit_are_rejected(scp: LocalAE) -> None:
    held = [_associate(scp) for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        extra = _associate(scp)
        assert extra.is_rejected, "a third association was accepted over max_associations=2"
        # Once one is released, a new one gets in: the limit counts live associations.
        held[0].release()
        again = _associate(scp)
        assert again.is_established
        status = again.send_c_echo()
        assert status.Status == 0x0000
        again.release()
    finally:
        for association in held:
            if association.is_established:
                association.release()


def test_hostile_c_store_is_refused_and_the_scp_goes_on(scp: LocalAE, tmp_path: Path) -> None:
    """A data set claiming a 4 GiB element: the SCP refuses it (0xC000) without reading the claimed value,
    files nothing, and the next association works."""
    hostile = tmp_path / "hostile.dcm"
    hostile.write_bytes(HOSTILE["huge element"])
    peer = AE(ae_title="PEER")
    peer.acse_timeout = peer.dimse_timeout = 5
    peer.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
    association = peer.associate(scp.host, scp.port, ae_title=scp.aet)
    assert association.is_established
    try:
        status = association.send_c_store(hostile)
        assert status is not None and status.Status == 0xC000  # Cannot Understand: refused, not filed
    finally:
        association.release()
    assert not list((tmp_path / "quarantine").rglob("*.dcm")), "the refused data set was filed"
    after = _associate(scp)
    assert after.is_established and after.send_c_echo().Status == 0x0000
    after.release()
