"""Publication fixtures: the real registry service in process, real Orthanc as the PACS, a test CA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from drimbox.config import DimseSettings, LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import IssuedCert, TestCA
from drimbox.manifest import ManifestBuilder
from drimbox.pacs import PacsClient
from drimbox.publish.outbox import Backoff, Outbox
from drimbox.publish.pipeline import Publisher
from drimbox.publish.vihf import VihfIssuer, VihfProfile
from drimbox.publish.worker import OutboxWorker
from drimbox.publish.xds import Code, Signer, XdsClient, XdsEndpoints
from registry import RegistrySettings, create_app

from .test_envelope_vs_ans import sample_like_policy

NETWORK_DICOMWEB = "https://127.0.0.2:8443/dicom-web"
ROLE = Code("10", "1.2.250.1.71.1.2.7", "Médecin")
SPECIALTY = Code("SM44", "1.2.250.1.71.4.2.5", "Radio-diagnostic et imagerie médicale (SM)")


@pytest.fixture(scope="session")
def publish_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, IssuedCert]:
    """A test CA (the registry trusts it) and the site's organisation certificate."""
    ca = TestCA.create(tmp_path_factory.mktemp("publish-pki"))
    return ca, ca.issue("site-a", hosts=["127.0.0.2"])


@pytest.fixture()
def registry_http(tmp_path: Path, publish_ca: tuple[TestCA, IssuedCert]) -> Iterator[TestClient]:
    """The registry service (SQLite, fresh) in process, behind a TestClient (an httpx.Client)."""
    ca, _ = publish_ca
    app = create_app(RegistrySettings(data_dir=tmp_path / "registry", trusted_ca_file=ca.cert_path))
    with TestClient(app) as client:
        yield client


@pytest.fixture()
def xds(registry_http: TestClient) -> XdsClient:
    """The node's XDS.b client on the in-process registry."""
    return XdsClient(XdsEndpoints("http://testserver/xds/registry", "http://testserver/xds/repository"),
                     registry_http)


@pytest.fixture()
def signer(publish_ca: tuple[TestCA, IssuedCert]) -> Signer:
    """The organisation key."""
    _, issued = publish_ca
    return Signer.from_files(issued.cert_path, issued.key_path)


@pytest.fixture()
def pacs_client(orthanc_a_clean: OrthancProcess, node_ae: LocalAE) -> Iterator[PacsClient]:
    """C-FIND to a freshly emptied Orthanc."""
    with PacsClient(node_ae, orthanc_a_clean.remote_ae(timeout_s=10), DimseSettings()) as client:
        yield client


@dataclass
class Bench:
    """An outbox, its pipeline and a way to run every runnable job now."""

    outbox: Outbox
    publisher: Publisher
    worker: OutboxWorker
    xds: XdsClient
    signer: Signer
    vihf: VihfIssuer

    def run(self, limit: int = 50) -> int:
        """Claim and run jobs until none is runnable; return how many ran."""
        ran = 0
        while ran < limit:
            handle = self.outbox.claim("test-worker", 60)
            if handle is None:
                return ran
            self.worker.run_one(handle)
            ran += 1
        return ran


@pytest.fixture()
def bench(tmp_path: Path, xds: XdsClient, signer: Signer, pacs_client: PacsClient) -> Iterator[Bench]:
    """The publication pipeline over real Orthanc and the in-process registry (no worker thread)."""
    outbox = Outbox(tmp_path / "outbox.sqlite3", backoff=Backoff(base_s=0.01, max_s=0.02, max_attempts=3))
    vihf = VihfIssuer(VihfProfile("1750803447", Code("SA07", "1.2.250.1.71.4.2.4", "Cabinet"), "drimbox", "drimbox",
                                  "0.1", "TEST"), signer)
    publisher = Publisher(outbox=outbox, pacs=pacs_client, xds=xds, kos_factory=ManifestBuilder(NETWORK_DICOMWEB),
                          policy=sample_like_policy(),
                          signer=signer, vihf=vihf, profession=ROLE, specialty=SPECIALTY)
    yield Bench(outbox, publisher, OutboxWorker(outbox, publisher), xds, signer, vihf)
    outbox.close()

