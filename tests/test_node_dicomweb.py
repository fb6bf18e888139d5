"""The node's DICOMweb end to end: a real :class:`~drimbox.node.Node` serving its site face (uvicorn,
bearer tokens) and its network face (mutual TLS), in front of a real PACS reached three ways
(Orthanc over DIMSE, Orthanc over its REST fast path, DCMTK's dcmqrscp over DIMSE).

Clients are independent implementations: ``dicomweb-client`` and Orthanc's own DICOMweb client.
Expected values come from pydicom reads of the generated files.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dicomweb_client.api import DICOMwebClient
from fastapi import FastAPI
from pydicom import Dataset, dcmread
from pydicom.uid import JPEGLSLossless

from drimbox.app import PUBLIC_PATHS
from drimbox.config import NodeSettings, load_settings
from drimbox.devnet.dcmqrscp import DcmqrscpProcess
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.node import Node
from drimbox.testdata import GeneratedStudy, make_patient, write_ct_study, write_mammography_study, write_mr_study
from drimbox.trust import mint_token

ISSUER = "urn:test:node-dicomweb"
NODE_HOST = "127.0.0.2"
AS_STORED = (("application/dicom", "*"),)
MULTIPART_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


# -- data and peers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pacs:
    """A PACS, and the node's way to it."""

    name: str
    backend: str
    settings: dict[str, Any]
    load: Callable[[Iterable[Path]], object]
    reset: Callable[[], None]
    count: Callable[[], int]
    compressed: bool
    orthanc: OrthancProcess | None


@dataclass(frozen=True)
class Studies:
    """What is loaded in the PACS."""

    mammo: GeneratedStudy
    ct: GeneratedStudy
    mr: GeneratedStudy | None

    @property
    def all(self) -> list[GeneratedStudy]:
        """Every loaded study."""
        return [s for s in (self.mammo, self.ct, self.mr) if s is not None]

    def source(self, sop_instance_uid: str) -> Path:
        """The generated file of an instance."""
        return next(i.path for s in self.all for i in s.instances if i.sop_instance_uid == sop_instance_uid)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedStudy, GeneratedStudy, GeneratedStudy]:
    """A small mammogram, a 2-series CT and a JPEG-LS MR."""
    root = tmp_path_factory.mktemp("node-dicomweb-data")
    mammo = write_mammography_study(root / "mg", make_patient(301), size="small", seed=31)
    ct = write_ct_study(root / "ct", make_patient(302), series=2, slices_per_series=3, rows=64, cols=64, seed=32)
    mr = write_mr_study(root / "mr", make_patient(303), slices=2, rows=64, cols=64, seed=33,
                        transfer_syntax=JPEGLSLossless)  # fmt: skip
    return mammo, ct, mr


@pytest.fixture(params=["dimse-orthanc", "orthanc", "dimse-dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> Pacs:
    """An empty PACS and the backend the node is forced to use for it."""
    if request.param == "dimse-dcmqrscp":
        archive: DcmqrscpProcess = request.getfixturevalue("dcmqrscp_clean")
        remote = archive.remote_ae(timeout_s=10)
        return Pacs("dimse-dcmqrscp", "dimse", remote.model_dump(), archive.load, archive.reset, archive.instance_count,
                    False, None)  # fmt: skip
    orthanc: OrthancProcess = request.getfixturevalue("orthanc_a_clean")
    backend = "orthanc" if request.param == "orthanc" else "dimse"
    remote = orthanc.remote_ae(timeout_s=10)
    return Pacs(request.param, backend, remote.model_dump(), orthanc.upload, orthanc.reset, orthanc.instance_count,
                True, orthanc)  # fmt: skip


@pytest.fixture()
def studies(pacs: Pacs, generated: tuple[GeneratedStudy, GeneratedStudy, GeneratedStudy]) -> Studies:
    """The generated studies, loaded into the PACS (the MR where compressed files can be served)."""
    mammo, ct, mr = generated
    loaded = Studies(mammo, ct, mr if pacs.compressed else None)
    pacs.load([f for s in loaded.all for f in s.files])
    return loaded


# -- the node ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """The token issuer's key, and its public key file the node's verifier reads."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("idp") / "idp.pub.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    return key, path


class _Served:
    """One ASGI app on a uvicorn server in a thread."""

    def __init__(self, app: FastAPI, port: int, **tls: Any) -> None:
        config = uvicorn.Config(app, host=NODE_HOST, port=port, log_level="warning", lifespan="off", **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class RunningNode:
    """A node serving both faces, and what a test needs to call it."""

    node: Node
    site: str
    network: str
    token: str
    tls: ssl.SSLContext

    @property
    def auth(self) -> dict[str, str]:
        """The bearer header."""
        return {"Authorization": f"Bearer {self.token}"}

    def dicomweb(self) -> DICOMwebClient:
        """dicomweb-client on the site face, with the token."""
        return DICOMwebClient(url=f"{self.site}/dicom-web", headers=self.auth)


def _node_settings(
    pacs: dict[str, Any], backend: str, tmp_path: Path, idp_public: Path, test_ca: TestCA
) -> NodeSettings:
    cert = test_ca.issue(f"node-{tmp_path.name}"[:60], hosts=[NODE_HOST])
    return load_settings(
        None,
        name="node-under-test",
        local={"aet": "DRIMBOX", "host": NODE_HOST, "port": free_port(NODE_HOST)},
        pacs=pacs,
        http={
            "host": NODE_HOST,
            "port": free_port(NODE_HOST),
            "network_host": NODE_HOST,
            "network_port": free_port(NODE_HOST),
        },  # fmt: skip
        tls={"ca_file": str(test_ca.cert_path), "cert_file": str(cert.cert_path), "key_file": str(cert.key_path)},
        auth={"issuer": ISSUER, "public_key_file": str(idp_public)},
        storage={"data_dir": str(tmp_path / "node-data")},
        dicomweb={"backend": backend, "retry_after_s": 13},
        peers={"clients": {"127.0.0.1": ["peer"]}},  # the peer below: its tokens are bound to it
    )


def _start(settings: NodeSettings, idp: tuple[ec.EllipticCurvePrivateKey, Path], test_ca: TestCA,
           tmp_path: Path) -> Iterator[RunningNode]:  # fmt: skip
    node = Node(settings)
    http, tls = settings.http, settings.tls
    site = _Served(node.site_app, http.port)
    network = _Served(node.network_app, http.network_port, ssl_certfile=str(tls.cert_file),
                      ssl_keyfile=str(tls.key_file), ssl_ca_certs=str(tls.ca_file),
                      ssl_cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
    client_cert = test_ca.issue(f"peer-{tmp_path.name}"[:60], hosts=["127.0.0.1"], server=False)
    context = ssl.create_default_context(cafile=str(test_ca.cert_path))
    context.load_cert_chain(str(client_cert.cert_path), str(client_cert.key_path))
    token = mint_token(idp[0], issuer=ISSUER, audience="drimbox", subject="rpps:10101010101", rpps="10101010101",
                       client_id="peer")
    try:
        yield RunningNode(node, f"http://{NODE_HOST}:{http.port}", f"https://{NODE_HOST}:{http.network_port}",
                          token, context)  # fmt: skip
    finally:
        site.stop()
        network.stop()
        node.stop()


@pytest.fixture()
def running(
    pacs: Pacs, tmp_path: Path, idp_key: tuple[ec.EllipticCurvePrivateKey, Path], test_ca: TestCA
) -> Iterator[RunningNode]:
    """The node in front of ``pacs``, both faces served."""
    settings = _node_settings(pacs.settings, pacs.backend, tmp_path, idp_key[1], test_ca)
    yield from _start(settings, idp_key, test_ca, tmp_path)


# -- helpers -------------------------------------------------------------------------------------------


def _by_sop(datasets: Iterable[Dataset]) -> dict[str, Dataset]:
    return {str(ds.SOPInstanceUID): ds for ds in datasets}


def _check_identical(received: Iterable[Dataset], studies: Studies, expected_uids: Iterable[str]) -> None:
    got = _by_sop(received)
    assert sorted(got) == sorted(expected_uids)
    for uid, ds in got.items():
        source = dcmread(studies.source(uid))
        assert ds.file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
        assert ds.PixelData == source.PixelData, uid


def _without_meta(ds: Dataset) -> Dataset:
    out = Dataset()
    out.update(ds)
    return out


# -- QIDO and WADO through dicomweb-client -------------------------------------------------------------------


def test_qido_at_every_level(running: RunningNode, studies: Studies) -> None:
    client = running.dicomweb()
    mammo = dcmread(studies.mammo.files[0])
    [study] = client.search_for_studies(search_filters={"PatientName": f"{studies.mammo.patient.family}*"})
    answer = Dataset.from_json(study)
    assert (answer.StudyInstanceUID, answer.PatientID, str(answer.PatientName), answer.AccessionNumber) == (
        mammo.StudyInstanceUID, mammo.PatientID, str(mammo.PatientName), mammo.AccessionNumber)  # fmt: skip
    assert int(answer.NumberOfStudyRelatedInstances) == 4
    assert answer.RetrieveURL == f"{running.site}/dicom-web/studies/{mammo.StudyInstanceUID}"
    series = client.search_for_series(studies.ct.study_instance_uid)
    assert {Dataset.from_json(s).SeriesInstanceUID for s in series} == set(studies.ct.series_uids())
    ct_series = studies.ct.series_uids()[0]
    instances = client.search_for_instances(studies.ct.study_instance_uid, ct_series)
    expected = [i.sop_instance_uid for i in studies.ct.instances if i.series_instance_uid == ct_series]
    assert sorted(Dataset.from_json(i).SOPInstanceUID for i in instances) == sorted(expected)
    all_series = client.search_for_series(search_filters={"Modality": "CT"})
    assert len(all_series) == 2


def test_wado_study_series_instance_byte_identical(running: RunningNode, studies: Studies) -> None:
    client = running.dicomweb()
    for study in studies.all:
        received = client.retrieve_study(study.study_instance_uid, media_types=AS_STORED)
        _check_identical(received, studies, study.sop_instance_uids())
    series_uid = studies.ct.series_uids()[1]
    received = client.retrieve_series(studies.ct.study_instance_uid, series_uid, media_types=AS_STORED)
    _check_identical(received, studies, [i.sop_instance_uid for i in studies.ct.instances
                                         if i.series_instance_uid == series_uid])  # fmt: skip
    one = studies.mammo.instances[2]
    instance = client.retrieve_instance(studies.mammo.study_instance_uid, one.series_instance_uid,
                                        one.sop_instance_uid, media_types=AS_STORED)  # fmt: skip
    _check_identical([instance], studies, [one.sop_instance_uid])


def test_metadata_equals_the_stored_dataset_and_bulk_data_is_identical(running: RunningNode, studies: Studies) -> None:
    client = running.dicomweb()
    bulk_fetched = 0

    def fetch(uri: str) -> bytes:
        nonlocal bulk_fetched
        bulk_fetched += 1
        [value] = client.retrieve_bulkdata(uri)
        return bytes(value)  # dicomweb-client gives a bytearray, which pydicom would take as a list

    for study in (studies.mammo, studies.ct):
        for item in client.retrieve_study_metadata(study.study_instance_uid):
            ds = Dataset.from_json(item, bulk_data_uri_handler=fetch)
            source = _without_meta(dcmread(studies.source(str(ds.SOPInstanceUID))))
            assert sorted(e.tag for e in ds) == sorted(e.tag for e in source)
            for elem in source:
                assert ds[elem.tag].value == elem.value, elem.keyword
    assert bulk_fetched >= len(studies.mammo.files) + len(studies.ct.files)  # every PixelData at least


def test_stow_round_trips_into_the_pacs(running: RunningNode, pacs: Pacs, studies: Studies, tmp_path: Path) -> None:
    new = write_ct_study(tmp_path / "stow", make_patient(304), series=1, slices_per_series=2, rows=32, cols=32, seed=34)
    client = running.dicomweb()
    response = client.store_instances([dcmread(f) for f in new.files])
    assert len(response.ReferencedSOPSequence) == 2
    assert "FailedSOPSequence" not in response
    if pacs.orthanc is not None:  # check in Orthanc itself, through its REST API
        for instance in new.instances:
            [found] = pacs.orthanc.client.post("/tools/lookup", content=instance.sop_instance_uid).json()
            stored = pacs.orthanc.client.get(f"/instances/{found['ID']}/file").content
            assert dcmread(_bytes_file(tmp_path, stored)).PixelData == dcmread(instance.path).PixelData
    # and back through the node, from the PACS (never retrieved before: not in the cache)
    received = client.retrieve_study(new.study_instance_uid, media_types=AS_STORED)
    assert {str(ds.SOPInstanceUID) for ds in received} == set(new.sop_instance_uids())
    assert all(ds.PixelData == dcmread(p).PixelData for ds, p in zip(
        sorted(received, key=lambda d: int(d.InstanceNumber)), new.files, strict=True))  # fmt: skip


def _bytes_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"stored-{len(data)}-{time.monotonic_ns()}.dcm"
    path.write_bytes(data)
    return path


def test_warm_retrieval_is_served_from_the_cache(running: RunningNode, pacs: Pacs, studies: Studies) -> None:
    url = f"{running.site}/dicom-web/studies/{studies.ct.study_instance_uid}"
    headers = {**running.auth, "Accept": MULTIPART_ANY}
    with httpx.Client(timeout=30) as http:
        cold = http.get(url, headers=headers)
        assert cold.status_code == 200
        pacs.reset()  # the PACS no longer has the study
        assert pacs.count() == 0
        warm = http.get(url, headers=headers)
    assert warm.status_code == 200
    # Same parts, same bytes (boundaries differ per response).
    assert _parts(warm) == _parts(cold)
    received = running.dicomweb().retrieve_study(studies.ct.study_instance_uid, media_types=AS_STORED)
    _check_identical(received, studies, studies.ct.sop_instance_uids())


def _parts(response: httpx.Response) -> list[bytes]:
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    chunks = response.content.split(b"--" + boundary.encode())[1:-1]
    return sorted(chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for chunk in chunks)


def test_prefetch_api_fills_the_cache(running: RunningNode, pacs: Pacs, studies: Studies) -> None:
    with httpx.Client(timeout=30, headers=running.auth) as http:
        wanted = [studies.mammo.study_instance_uid, studies.ct.study_instance_uid]
        started = http.post(f"{running.site}/api/prefetch", json={"studies": wanted})
        assert started.status_code == 202, started.text
        status_url = started.headers["location"]
        assert started.json()["status_url"] == status_url
        deadline = time.monotonic() + 60
        while (job := http.get(status_url).json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["state"] == "done", job
        assert [s["instances"] for s in job["studies"]] == [4, 6]
        assert all(s["bytes"] > 0 and not s["from_cache"] for s in job["studies"])
        pacs.reset()
        again = http.post(f"{running.site}/api/prefetch", json={"studies": [studies.mammo.study_instance_uid]})
        while (job := http.get(again.headers["location"]).json())["state"] in ("queued", "running"):
            time.sleep(0.05)
        assert job["studies"][0]["from_cache"] is True
        bad = http.post(f"{running.site}/api/prefetch", json={"studies": ["not-a-uid"]})
        assert bad.status_code == 422
        assert http.get(f"{running.site}/api/prefetch/{'0' * 32}").status_code == 404
    received = running.dicomweb().retrieve_study(studies.mammo.study_instance_uid, media_types=AS_STORED)
    _check_identical(received, studies, studies.mammo.sop_instance_uids())


# -- Orthanc's own DICOMweb client ------------------------------------------------------------------------------


def test_orthanc_pulls_a_study_from_the_node(
    running: RunningNode, studies: Studies, orthanc_b_clean: OrthancProcess, tmp_path: Path
) -> None:
    """Orthanc B, configured with the node as a DICOMweb server (bearer header), queries and retrieves."""
    orthanc = orthanc_b_clean.client
    server = {"Url": f"{running.site}/dicom-web", "HttpHeaders": {"Authorization": f"Bearer {running.token}"}}
    assert orthanc.put("/dicom-web/servers/drimbox-node", json=server).status_code == 200
    try:
        found = orthanc.post("/dicom-web/servers/drimbox-node/qido", json={
            "Uri": "/studies", "Arguments": {"PatientID": studies.mammo.patient.ipp}}).json()  # fmt: skip
        # Orthanc reformats the answers as {tag: {"Name", "Value", "vr"…}}.
        assert [s["0020000D"]["Value"] for s in found] == [studies.mammo.study_instance_uid]
        assert found[0]["00100020"]["Value"] == studies.mammo.patient.ipp
        pulled = orthanc.post("/dicom-web/servers/drimbox-node/retrieve", timeout=60,
                              json={"Resources": [{"Study": studies.mammo.study_instance_uid}]})  # fmt: skip
        assert pulled.status_code == 200, pulled.text
    finally:
        orthanc.delete("/dicom-web/servers/drimbox-node")
    assert orthanc_b_clean.instance_count() == 4
    for instance in studies.mammo.instances:
        [hit] = orthanc.post("/tools/lookup", content=instance.sop_instance_uid).json()
        stored = orthanc.get(f"/instances/{hit['ID']}/file").content
        assert dcmread(_bytes_file(tmp_path, stored)).PixelData == dcmread(instance.path).PixelData


# -- the network face ---------------------------------------------------------------------------------------------


def test_network_face_serves_wado_only_over_mutual_tls(running: RunningNode, studies: Studies) -> None:
    study = studies.mammo.study_instance_uid
    with httpx.Client(verify=running.tls, timeout=30) as http:
        # Manifest scope (DESIGN §2b): no KOS-SOPInstanceUID → 400; a KOS this node never published → 403.
        # Serving within a published KOS is tested end to end in tests/e2e/test_scope.py.
        bare = http.get(f"{running.network}/dicom-web/studies/{study}",
                        headers={**running.auth, "Accept": MULTIPART_ANY})
        assert bare.status_code == 400
        assert "KOS-SOPInstanceUID" in bare.text
        unknown = http.get(f"{running.network}/dicom-web/studies/{study}/metadata",
                           headers={**running.auth, "KOS-SOPInstanceUID": "1.2.3.4"})
        assert unknown.status_code == 403
        # No QIDO, no STOW on the network face (DESIGN §2b).
        assert http.get(f"{running.network}/dicom-web/studies", headers=running.auth).status_code in (404, 405)
        assert http.get(f"{running.network}/dicom-web/studies/{study}/series",
                        headers=running.auth).status_code in (404, 405)  # fmt: skip
        assert http.post(f"{running.network}/dicom-web/studies", headers=running.auth).status_code in (404, 405)
        assert http.get(f"{running.network}/dicom-web/studies/{study}").status_code == 401
    anonymous = ssl.create_default_context(cafile=str(running.node.settings.tls.ca_file))
    with httpx.Client(verify=anonymous, timeout=10) as http, pytest.raises(httpx.TransportError):
        http.get(f"{running.network}/dicom-web/studies/{study}", headers=running.auth).raise_for_status()


def test_every_route_of_both_faces_requires_a_token(running: RunningNode, studies: Studies) -> None:
    for base, verify in ((running.site, True), (running.network, running.tls)):
        with httpx.Client(verify=verify, timeout=30) as http:
            schema = http.get(f"{base}/openapi.json").json()
            operations = [(m.upper(), p) for p, item in schema["paths"].items() for m in item]
            assert any("/dicom-web/" in p for _, p in operations)
            for method, path in operations:
                concrete = path.replace("{", "").replace("}", "").replace("path", "x")
                answer = http.request(method, f"{base}{concrete}")
                if concrete in PUBLIC_PATHS:
                    # No patient data there: liveness (200), the contextual call's target (an empty form
                    # is a 400), the login round trip (not configured on this node: 404).
                    assert answer.status_code in (200, 400, 404), (base, method, path)
                elif any(concrete.startswith(p) for p in ("/portal/", "/exams/")):
                    # Browser pages: not a 401 but the way to the login, and back.
                    assert answer.status_code == 303, (base, method, path)
                    assert answer.headers["location"].startswith("/auth/login?next="), (base, method, path)
                else:
                    assert answer.status_code == 401, (base, method, path)


# -- an unreachable PACS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["dimse", "orthanc"])
def test_unreachable_pacs_is_503_with_retry_after(
    backend: str, tmp_path: Path, idp_key: tuple[ec.EllipticCurvePrivateKey, Path], test_ca: TestCA
) -> None:
    dead = {"aet": "GONE", "host": "127.0.0.1", "port": free_port("127.0.0.1"), "timeout_s": 2,
            "rest_url": f"http://127.0.0.1:{free_port('127.0.0.1')}"}  # fmt: skip
    settings = _node_settings(dead, backend, tmp_path, idp_key[1], test_ca)
    for running in _start(settings, idp_key, test_ca, tmp_path):
        with httpx.Client(timeout=30, headers=running.auth) as http:
            for path, accept in (
                ("/dicom-web/studies", "application/dicom+json"),
                ("/dicom-web/studies/1.2.3", MULTIPART_ANY),
                ("/dicom-web/studies/1.2.3/series/1.2.4/instances", "application/dicom+json"),
            ):
                started = time.monotonic()
                response = http.get(f"{running.site}{path}", headers={"Accept": accept})
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "13"
                assert time.monotonic() - started < 10
