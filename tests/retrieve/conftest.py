"""Fixtures of the consumer-side tests."""

from __future__ import annotations

import pytest

from drimbox.config import LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port


@pytest.fixture()
def importer_ae(orthanc_b_clean: OrthancProcess, node_ae: LocalAE) -> LocalAE:
    """The importing node's AE: ``node_ae``'s title on a port of its own (``tests/pacs`` keeps a
    session-wide SCP on ``node_ae``'s), declared to site B's Orthanc, which sends its storage
    commitment reports there (undone by the next ``orthanc_b_clean``)."""
    ae = LocalAE(aet=node_ae.aet, host=node_ae.host, port=free_port(node_ae.host))
    orthanc_b_clean.add_modality("drimbox", ae.aet, ae.host, ae.port)
    return ae
