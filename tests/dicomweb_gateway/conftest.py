"""Fixtures of the gateway tests: generated studies on disk, a file store, TestClient and a real server.

Data are generated once per session by ``drimbox.testdata`` (tests only: the package itself never
imports drimbox) and every expected value is read back from those files with pydicom.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gwtest import Corpus, LiveServer
from pydicom.uid import JPEGLSLossless

from dicomweb_gateway import FileStore, GatewaySettings, create_app
from drimbox.testdata import (
    make_patient,
    write_ct_study,
    write_large_instance,
    write_mammography_study,
    write_mr_study,
)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """A screening mammogram and its prior, a 2-series CT, a JPEG-LS MR, a multi-frame instance."""
    root = tmp_path_factory.mktemp("corpus")
    woman = make_patient(11)
    return Corpus(
        mammo=write_mammography_study(root / "mg", woman, seed=1, study_date="20250114"),
        prior=write_mammography_study(root / "mg-prior", woman, seed=2, study_date="20240110"),
        ct=write_ct_study(root / "ct", make_patient(12, sex="M"), series=2, slices_per_series=4, rows=64, cols=64),
        mr_jpegls=write_mr_study(
            root / "mr", make_patient(13), slices=3, rows=64, cols=64, transfer_syntax=JPEGLSLossless
        ),
        multiframe=write_large_instance(root / "sc", make_patient(14), target_bytes=300_000, frame_shape=(128, 128)),
    )


@pytest.fixture(scope="session")
def store(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> FileStore:
    """A file store holding the whole corpus (read-only tests share it)."""
    fs = FileStore(tmp_path_factory.mktemp("store"))
    for path in corpus.files():
        fs.add(path)
    return fs


@pytest.fixture(scope="session")
def settings() -> GatewaySettings:
    """Default gateway settings."""
    return GatewaySettings()


@pytest.fixture(scope="session")
def client(store: FileStore, settings: GatewaySettings) -> Iterator[TestClient]:
    """A TestClient on a standalone gateway over ``store``."""
    with TestClient(create_app(store, settings)) as c:
        yield c


@pytest.fixture()
def empty_store(tmp_path: Path) -> FileStore:
    """A fresh, empty file store."""
    return FileStore(tmp_path / "empty-store")


@pytest.fixture(scope="session")
def live(store: FileStore, settings: GatewaySettings) -> Iterator[LiveServer]:
    """A real HTTP server serving ``store``."""
    with LiveServer(create_app(store, settings)) as server:
        yield server
