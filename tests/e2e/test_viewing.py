"""F9 backend: site B's site-face DICOMweb answers OHIF's request sequence for a study published by
site A, streamed from site A's network face (scope wired, mutual TLS, real tokens) and cached at B.

The site face here is the gateway over ``CachingStore(FileStore, SiteStore(site B's Orthanc store,
RemoteNodeStore))`` — the composition the node mounts — served in-process through httpx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from dicomweb_gateway import CachingStore, create_app
from dicomweb_gateway.backend import RetrieveTarget
from dicomweb_gateway.backends.filesystem import FileStore
from dicomweb_gateway.multipart import MultipartParser, PartData, PartEnd, PartStart
from drimbox.retrieve.model import Actor, Exam
from drimbox.retrieve.viewing import RemoteNodeStore, RemoteStudies, SiteStore
from drimbox.stores import build_dicomweb
from drimbox.trust.peers import HostListPolicy, network_client
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams
from tests.e2e.scoped_face import ScopedFace, scoped_network_face
from tests.e2e.test_retrieve import _orthanc_file

_MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


@dataclass
class Site:
    client: TestClient
    studies: RemoteStudies
    remote: RemoteNodeStore
    cache: FileStore
    source: ScopedFace
    exam: Exam


@pytest.fixture(scope="module")
def site(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("site-b-view")
    settings = net.settings("site-b", storage={"data_dir": str(tmp)})
    with scoped_network_face(net.settings("site-a"), tmp / "source") as source:
        fhir = net.endpoints["registry"]["fhir"]
        exam = next(e for e in published_exams(fhir, net.token(), net.screened_patient)
                    if any(i.sop_class_uid == _MG_FOR_PRESENTATION for s in e.series for i in s.instances))
        moved = replace(exam, series=tuple(
            replace(s, retrieve_url=f"{source.url}/studies/{exam.study_uid}/series/{s.series_uid}")
            for s in exam.series))
        studies = RemoteStudies()
        studies.open(moved, Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist",
                                  display_name=None, token=net.token()), patient_id=net.screened_patient.ins)
        local = build_dicomweb(settings)
        with network_client(settings) as http:
            remote = RemoteNodeStore(studies, http, HostListPolicy(settings.peers.hosts), tmp / "spool")
            cache = FileStore(tmp / "cache")
            store = CachingStore(cache, SiteStore(local.upstream, remote, studies))
            with TestClient(create_app(store)) as client:
                yield Site(client, studies, remote, cache, source, moved)
            cache.close()
        local.close()


def _multipart(response_body: bytes, content_type: str) -> list[bytes]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    parser = MultipartParser(match.group(1))
    parts: list[bytes] = []
    current = bytearray()
    for event in parser.feed(response_body):
        if isinstance(event, PartStart):
            current = bytearray()
        elif isinstance(event, PartData):
            current += event.data
        elif isinstance(event, PartEnd):
            parts.append(bytes(current))
    parser.close()
    return parts


def test_ohif_sequence_on_a_remote_study(net: Net, site: Site) -> None:
    exam, c = site.exam, site.client
    study = c.get("/dicom-web/studies", params={"StudyInstanceUID": exam.study_uid},
                  headers={"Accept": "application/dicom+json"})
    assert study.status_code == 200, study.text
    [found] = study.json()
    assert found["0020000D"]["Value"] == [exam.study_uid]
    assert found["00201208"]["Value"] == [exam.instance_count]  # NumberOfStudyRelatedInstances

    series = c.get(f"/dicom-web/studies/{exam.study_uid}/series", headers={"Accept": "application/dicom+json"})
    assert series.status_code == 200, series.text
    assert {s["0020000E"]["Value"][0] for s in series.json()} == {s.series_uid for s in exam.series}

    ref = exam.series[0]
    metadata = c.get(f"/dicom-web/studies/{exam.study_uid}/series/{ref.series_uid}/metadata",
                     headers={"Accept": "application/dicom+json"})
    assert metadata.status_code == 200, metadata.text
    assert {m["00080018"]["Value"][0] for m in metadata.json()} == {i.sop_instance_uid for i in ref.instances}

    sop = ref.instances[0].sop_instance_uid
    frames = c.get(f"/dicom-web/studies/{exam.study_uid}/series/{ref.series_uid}/instances/{sop}/frames/1",
                   headers={"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert frames.status_code == 200, frames.text
    [frame] = _multipart(frames.content, frames.headers["content-type"])
    original = pydicom.dcmread(_path(net, sop, site))
    assert frame == original.PixelData[: len(frame)] and len(frame) == original.Rows * original.Columns * 2

    # The metadata request pulled the series once from the source; the frames came from B's cache.
    served = [e for e in site.source.audit.events() if e.action.startswith("wado.") and e.kos_uid == exam.kos_uid]
    # (The series search read every series' metadata once; count this series' own.)
    assert sum(1 for e in served if e.action == "wado.metadata-served" and e.series_uid == ref.series_uid) \
        == len(ref.instances)
    assert not any(e.action == "wado.frames-served" for e in served)
    assert len(site.cache.instances(site_target(exam, ref.series_uid))) == len(ref.instances)


def site_target(exam: Exam, series_uid: str) -> RetrieveTarget:
    return RetrieveTarget(exam.study_uid, series_uid)


def _path(net: Net, sop: str, site: Site) -> Path:
    path = site.cache.root.parent / f"orthanc-{sop}.dcm"
    path.write_bytes(_orthanc_file(net, sop))
    return path


def test_study_search_by_patient_lists_the_remote_study(net: Net, site: Site) -> None:
    found = site.client.get("/dicom-web/studies", params={"PatientID": net.screened_patient.ins},
                            headers={"Accept": "application/dicom+json"})
    assert found.status_code == 200, found.text
    uids = [s["0020000D"]["Value"][0] for s in found.json()]
    assert site.exam.study_uid in uids
    remote = next(s for s in found.json() if s["0020000D"]["Value"][0] == site.exam.study_uid)
    assert remote["00100020"]["Value"] == [net.screened_patient.ins]


def test_instances_of_a_remote_study_are_retrieved_byte_identical(net: Net, site: Site) -> None:
    exam = site.exam
    ref = exam.series[-1]
    response = site.client.get(f"/dicom-web/studies/{exam.study_uid}/series/{ref.series_uid}",
                               headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert response.status_code == 200
    parts = _multipart(response.content, response.headers["content-type"])
    assert sorted(parts) == sorted(_orthanc_file(net, i.sop_instance_uid) for i in ref.instances)


def test_remote_study_is_read_only(site: Site, tmp_path: Path) -> None:
    assert site.remote.store(tmp_path / "x.dcm").status.value == "failed"


def test_not_opened_study_goes_to_the_local_pacs(site: Site) -> None:
    response = site.client.get("/dicom-web/studies/1.2.3.4.5.6.7/series", headers={"Accept": "application/dicom+json"})
    assert response.status_code in (200, 204)
    assert response.status_code == 204 or response.json() == []
