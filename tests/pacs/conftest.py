"""Fixtures of the PACS bridge tests: the node's SCP, a client, and the PACS (Orthanc or dcmqrscp).

Every DIMSE test that takes ``pacs`` runs twice: against a real Orthanc (lenient) and DCMTK's
``dcmqrscp`` (strict hierarchical model, no SOP Class UID / Rows / Columns in C-FIND answers).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from drimbox.config import DimseSettings, LocalAE, StorageSettings
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.dcmtk import dcmtk_env, dcmtk_tool
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.pacs import MoveMediator, NodeScp, PacsClient
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study, write_mammography_study

from .peers import Dcmtk, Pacs


@pytest.fixture(scope="session")
def dimse_settings() -> DimseSettings:
    """Short timeouts: every failure a test provokes must end within seconds."""
    return DimseSettings(acse_timeout_s=3, network_timeout_s=30, connect_timeout_s=2, pool_size=2, move_quarantine_s=2)


@pytest.fixture(scope="session")
def node_storage(tmp_path_factory: pytest.TempPathFactory) -> StorageSettings:
    """The node's data directory (quarantine below it)."""
    return StorageSettings(data_dir=tmp_path_factory.mktemp("node-data"))


@pytest.fixture(scope="session")
def mediator(node_storage: StorageSettings, dimse_settings: DimseSettings) -> MoveMediator:
    """The node-wide mediator shared by the SCP and every client."""
    return MoveMediator(
        quarantine_dir=node_storage.quarantine_dir, straggler_timeout_s=dimse_settings.move_quarantine_s
    )


@pytest.fixture(scope="session")
def node_scp(
    node_ae: LocalAE, dimse_settings: DimseSettings, node_storage: StorageSettings, mediator: MoveMediator
) -> Iterator[NodeScp]:
    """The node's SCP, listening on ``node_ae`` (the PACSes know it as move destination DRIMBOX)."""
    scp = NodeScp(node_ae, dimse_settings, node_storage, mediator)
    scp.start()
    yield scp
    scp.stop()


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> Pacs:
    """An empty real PACS: Orthanc, then DCMTK dcmqrscp."""
    if request.param == "orthanc":
        orthanc: OrthancProcess = request.getfixturevalue("orthanc_a_clean")
        return Pacs("orthanc", orthanc.remote_ae(timeout_s=10), orthanc.upload)
    archive: DcmqrscpProcess = request.getfixturevalue("dcmqrscp_clean")
    return Pacs("dcmqrscp", archive.remote_ae(timeout_s=10), archive.load)


@pytest.fixture()
def client(
    node_ae: LocalAE, pacs: Pacs, dimse_settings: DimseSettings, mediator: MoveMediator, node_scp: NodeScp
) -> Iterator[PacsClient]:
    """A client of ``pacs`` sharing the node's mediator (the node SCP runs for C-MOVE)."""
    with PacsClient(node_ae, pacs.remote, dimse_settings, mediator=mediator) as pacs_client:
        yield pacs_client


@pytest.fixture(scope="session")
def mg_study(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A small 4-view screening mammography study (416 x 320, 16-bit)."""
    return write_mammography_study(tmp_path_factory.mktemp("mg"), make_patient(101), size="small", seed=1)


@pytest.fixture(scope="session")
def mg_prior(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """Another patient's small mammography study, a year earlier."""
    return write_mammography_study(
        tmp_path_factory.mktemp("mg-prior"), make_patient(102), size="small", seed=2, study_date="20240110"
    )


@pytest.fixture(scope="session")
def ct_study(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A small two-series CT (2 x 5 slices of 64 x 64)."""
    return write_ct_study(
        tmp_path_factory.mktemp("ct"), make_patient(103), series=2, slices_per_series=5, rows=64, cols=64, seed=3
    )


def _run_dcmtk(tool: str, *args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk_tool(tool), *map(str, args)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def dcmtk() -> Dcmtk:
    """Runs DCMTK's own tools (not pynetdicom's same-named scripts), with TCP_NODELAY=1."""
    return _run_dcmtk
