"""Fixtures of the store tests: the PACS (Orthanc over DIMSE, Orthanc over REST, dcmqrscp over DIMSE),
the data loaded into it, and the store under test in front of it.

Every test that takes ``pacs`` runs three times. Expected values are read from the generated files
with pydicom, never from the PACS's own answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import JPEGLSLossless
from storetest import Corpus, Pacs

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.pacs import PacsClient
from drimbox.stores import DimseStore, OrthancStore, Spool
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study, write_mammography_study, write_mr_study

PACS_KINDS = ["dimse-orthanc", "orthanc", "dimse-dcmqrscp"]


@pytest.fixture(scope="session")
def store_dimse() -> DimseSettings:
    """Short timeouts: a failure a test provokes ends within seconds."""
    return DimseSettings(acse_timeout_s=3, network_timeout_s=30, connect_timeout_s=2, pool_size=2)


@pytest.fixture(scope="session")
def scu_ae(node_ae: LocalAE) -> LocalAE:
    """The node's calling AE title (the PACSes know it); no SCP needed for C-GET."""
    return LocalAE(aet=node_ae.aet, host="127.0.0.1", port=node_ae.port)


@pytest.fixture(scope="session")
def mammo(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A small 4-view screening mammogram (one series), patient with accented names."""
    return write_mammography_study(tmp_path_factory.mktemp("s-mg"), make_patient(201), size="small", seed=11)


@pytest.fixture(scope="session")
def ct(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A two-series CT (2 x 3 slices of 64 x 64), another patient, another date."""
    return write_ct_study(tmp_path_factory.mktemp("s-ct"), make_patient(202), series=2, slices_per_series=3,
                          rows=64, cols=64, seed=12, study_date="20240611")  # fmt: skip


@pytest.fixture(scope="session")
def mr(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A JPEG-LS lossless MR (3 slices): served as stored by PACSes with codecs."""
    return write_mr_study(tmp_path_factory.mktemp("s-mr"), make_patient(203), slices=3, rows=64, cols=64, seed=13,
                          study_date="20231205", transfer_syntax=JPEGLSLossless)  # fmt: skip


def _orthanc_pacs(orthanc: OrthancProcess, kind: str) -> Pacs:
    return Pacs(
        name="orthanc" if kind == "orthanc" else "dimse-orthanc",
        kind="orthanc" if kind == "orthanc" else "dimse",
        remote=orthanc.remote_ae(timeout_s=10),
        load=orthanc.upload,
        reset=orthanc.reset,
        count=orthanc.instance_count,
        compressed=True,
        full_answers=True,
    )


@pytest.fixture(params=PACS_KINDS)
def pacs(request: pytest.FixtureRequest) -> Pacs:
    """An empty real PACS and the backend in front of it (three variants)."""
    if request.param == "dimse-dcmqrscp":
        archive: DcmqrscpProcess = request.getfixturevalue("dcmqrscp_clean")
        return Pacs("dimse-dcmqrscp", "dimse", archive.remote_ae(timeout_s=10), archive.load, archive.reset,
                    archive.instance_count, compressed=False, full_answers=False)  # fmt: skip
    return _orthanc_pacs(request.getfixturevalue("orthanc_a_clean"), request.param)


@pytest.fixture()
def corpus(pacs: Pacs, mammo: GeneratedStudy, ct: GeneratedStudy, mr: GeneratedStudy) -> Corpus:
    """The studies, loaded into ``pacs`` (the MR only where compressed files can be served)."""
    loaded = Corpus(mammo, ct, mr if pacs.compressed else None)
    pacs.load(list(loaded.files()))
    return loaded


@pytest.fixture()
def spool(tmp_path: Path) -> Spool:
    """A fresh spool."""
    return Spool(tmp_path / "spool")


@pytest.fixture()
def store(pacs: Pacs, spool: Spool, scu_ae: LocalAE, store_dimse: DimseSettings) -> Iterator[DimseStore | OrthancStore]:
    """The store under test, in front of ``pacs``."""
    if pacs.kind == "orthanc":
        assert pacs.remote.rest_url is not None
        fast = OrthancStore(pacs.remote.rest_url, spool, retry_after_s=7)
        yield fast
        fast.close()
        return
    client = PacsClient(scu_ae, pacs.remote, store_dimse, fsync=False)
    yield DimseStore(client, spool, retry_after_s=7)
    client.close()
