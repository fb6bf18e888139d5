"""Session-wide real peers: two Orthanc PACSes, DCMTK's strict dcmqrscp, a test CA.

Servers start once per session (Orthanc ~0.1 s, dcmqrscp ~0.02 s) in pytest's temporary directory
and are emptied between tests by the ``*_clean`` fixtures. Stopping Orthanc takes 2.5-5 s, so every
server is only *terminated* by its own fixture and ``_devnet_servers`` waits for all of them at the
very end: the stops overlap instead of adding up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from drimbox.config import LocalAE
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port

NODE_ADDRESS = "127.0.0.2"  # the node under test has its own loopback address, like a site


class _Server(Protocol):
    def terminate(self) -> None: ...
    def wait(self, timeout: float = ...) -> None: ...


pytest_plugins = ["tests.browser.plugin"]


@pytest.fixture(scope="session")
def _devnet_servers() -> Iterator[list[_Server]]:
    """Registry of started servers, all waited for (in parallel) at session end."""
    servers: list[_Server] = []
    yield servers
    for server in servers:
        server.terminate()  # usually already done by the owning fixture; harmless twice
    for server in servers:
        server.wait()


@pytest.fixture(scope="session")
def node_ae() -> LocalAE:
    """The node under test's DIMSE address (tests start its SCP there; PACSes know it as a destination)."""
    return LocalAE(aet="DRIMBOX", host=NODE_ADDRESS, port=free_port(NODE_ADDRESS))


@pytest.fixture(scope="session")
def dcmtk_peer_ae() -> LocalAE:
    """Address reserved for a DCMTK peer (storescp / movescu listener) known to every PACS as "DCMTK"."""
    return LocalAE(aet="DCMTK", host="127.0.0.1", port=free_port("127.0.0.1"))


def _start_orthanc(
    name: str,
    aet: str,
    tmp_path_factory: pytest.TempPathFactory,
    servers: list[_Server],
    node_ae: LocalAE,
    dcmtk_peer_ae: LocalAE,
) -> Iterator[OrthancProcess]:
    orthanc = OrthancProcess(
        tmp_path_factory.mktemp(name),
        aet=aet,
        modalities={
            "drimbox": (node_ae.aet, node_ae.host, node_ae.port),
            "dcmtk": (dcmtk_peer_ae.aet, dcmtk_peer_ae.host, dcmtk_peer_ae.port),
        },
    )
    orthanc.start()
    servers.append(orthanc)
    yield orthanc
    orthanc.terminate()


@pytest.fixture(scope="session")
def orthanc_a(
    tmp_path_factory: pytest.TempPathFactory,
    _devnet_servers: list[_Server],
    node_ae: LocalAE,
    dcmtk_peer_ae: LocalAE,
) -> Iterator[OrthancProcess]:
    """Site A's PACS: a real Orthanc, AET "PACS_A", knowing the node ("drimbox") and "dcmtk"."""
    yield from _start_orthanc("orthanc_a", "PACS_A", tmp_path_factory, _devnet_servers, node_ae, dcmtk_peer_ae)


@pytest.fixture(scope="session")
def orthanc_b(
    tmp_path_factory: pytest.TempPathFactory,
    _devnet_servers: list[_Server],
    node_ae: LocalAE,
    dcmtk_peer_ae: LocalAE,
) -> Iterator[OrthancProcess]:
    """Site B's PACS: a real Orthanc, AET "PACS_B", knowing the node ("drimbox") and "dcmtk"."""
    yield from _start_orthanc("orthanc_b", "PACS_B", tmp_path_factory, _devnet_servers, node_ae, dcmtk_peer_ae)


@pytest.fixture()
def orthanc_a_clean(orthanc_a: OrthancProcess) -> OrthancProcess:
    """``orthanc_a`` emptied (no patients, only its start-up modalities) before the test."""
    orthanc_a.reset()
    return orthanc_a


@pytest.fixture()
def orthanc_b_clean(orthanc_b: OrthancProcess) -> OrthancProcess:
    """``orthanc_b`` emptied (no patients, only its start-up modalities) before the test."""
    orthanc_b.reset()
    return orthanc_b


@pytest.fixture(scope="session")
def dcmqrscp(
    tmp_path_factory: pytest.TempPathFactory,
    _devnet_servers: list[_Server],
    node_ae: LocalAE,
    dcmtk_peer_ae: LocalAE,
) -> Iterator[DcmqrscpProcess]:
    """DCMTK's strict Q/R archive, AET "DCMQRSCP", with the node and the DCMTK peer as move destinations."""
    archive = DcmqrscpProcess(
        tmp_path_factory.mktemp("dcmqrscp"),
        aet="DCMQRSCP",
        move_destinations={
            node_ae.aet: (node_ae.host, node_ae.port),
            dcmtk_peer_ae.aet: (dcmtk_peer_ae.host, dcmtk_peer_ae.port),
        },
    )
    archive.start()
    _devnet_servers.append(archive)
    yield archive
    archive.terminate()


@pytest.fixture()
def dcmqrscp_clean(dcmqrscp: DcmqrscpProcess) -> DcmqrscpProcess:
    """``dcmqrscp`` emptied before the test."""
    dcmqrscp.reset()
    return dcmqrscp


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A local test CA (``ca.pem`` / ``ca.key``) in a session temporary directory."""
    return TestCA.create(tmp_path_factory.mktemp("pki"))


class DicomFactory(Protocol):
    """Writes ``count`` tiny instances of one series; returns (paths, study UID, series UID)."""

    def __call__(
        self, count: int = ..., *, patient_id: str = ..., patient_name: str = ...
    ) -> tuple[list[Path], str, str]: ...


@pytest.fixture()
def tiny_dicom(tmp_path: Path) -> DicomFactory:
    """Factory of tiny (4x4, 16-bit) CT instances for devnet tests that need no realistic data."""
    counter = 0

    def make(
        count: int = 1, *, patient_id: str = "DEVNET1", patient_name: str = "DUPONT^MARIE"
    ) -> tuple[list[Path], str, str]:
        nonlocal counter
        study, series = generate_uid(), generate_uid()
        paths: list[Path] = []
        for number in range(1, count + 1):
            ds = Dataset()
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = generate_uid()
            ds.PatientName, ds.PatientID = patient_name, patient_id
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240102", "101500", "ACC1", "1"
            ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, number
            ds.Rows = ds.Columns = 4
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = bytes(4 * 4 * 2)
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            counter += 1
            path = tmp_path / f"tiny-{counter}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        return paths, study, series

    return make
