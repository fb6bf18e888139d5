"""Manifest scope on the source's network face (DESIGN §2b), over real HTTP with mutual TLS and
real tokens, against site A's real outbox and Orthanc; and the source's audit of what it served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from drimbox.retrieve.model import Actor, Exam
from drimbox.retrieve.transfer import ACCEPT_DICOM, StudyRetriever
from drimbox.trust.peers import HostListPolicy, network_client
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams
from tests.e2e.scoped_face import ScopedFace, scoped_network_face


@pytest.fixture(scope="module")
def face(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScopedFace]:
    with scoped_network_face(net.settings("site-a"), tmp_path_factory.mktemp("scoped-a")) as running:
        yield running


@pytest.fixture(scope="module")
def exams(net: Net) -> list[Exam]:
    fhir = net.endpoints["registry"]["fhir"]
    found = published_exams(fhir, net.token(), net.screened_patient) + published_exams(fhir, net.token(),
                                                                                       net.ct_patient)
    assert len(found) >= 3
    return found


@pytest.fixture
def client(net: Net, tmp_path: Path) -> Iterator[httpx.Client]:
    with network_client(net.settings("site-b", storage={"data_dir": str(tmp_path)})) as c:
        yield c


def _series_url(face: ScopedFace, exam: Exam, index: int = 0) -> str:
    return f"{face.url}/studies/{exam.study_uid}/series/{exam.series[index].series_uid}"


def _refusals(face: ScopedFace) -> list[str]:
    return [e.detail for e in face.audit.events(action="wado.kos-scope") if e.outcome == "refused"]


def test_missing_header_is_400(net: Net, face: ScopedFace, exams: list[Exam], client: httpx.Client) -> None:
    before = len(_refusals(face))
    response = client.get(_series_url(face, exams[0]), headers={"Accept": ACCEPT_DICOM,
                                                                 "Authorization": f"Bearer {net.token()}"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "KOS-SOPInstanceUID" in response.json()["detail"]
    assert len(_refusals(face)) == before + 1


def test_malformed_header_is_400(net: Net, face: ScopedFace, exams: list[Exam], client: httpx.Client) -> None:
    response = client.get(_series_url(face, exams[0]), headers={
        "Accept": ACCEPT_DICOM, "Authorization": f"Bearer {net.token()}", "KOS-SOPInstanceUID": "1.2.x; drop"})
    assert response.status_code == 400


def test_no_token_is_401_before_scope(face: ScopedFace, exams: list[Exam], client: httpx.Client) -> None:
    response = client.get(_series_url(face, exams[0]), headers={"KOS-SOPInstanceUID": exams[0].kos_uid})
    assert response.status_code == 401


def test_kos_not_covering_the_series_is_403(net: Net, face: ScopedFace, exams: list[Exam],
                                            client: httpx.Client) -> None:
    mg, other = exams[0], next(e for e in exams if e.study_uid != exams[0].study_uid)
    headers = {"Accept": ACCEPT_DICOM, "Authorization": f"Bearer {net.token()}", "KOS-SOPInstanceUID": other.kos_uid}
    before = len(_refusals(face))
    for url in (_series_url(face, mg), f"{face.url}/studies/{mg.study_uid}",
                f"{_series_url(face, mg)}/instances/{mg.series[0].instances[0].sop_instance_uid}",
                f"{_series_url(face, mg)}/metadata",
                # the KOS's own study with a series of another study
                f"{face.url}/studies/{other.study_uid}/series/{mg.series[0].series_uid}"):
        response = client.get(url, headers=headers)
        assert response.status_code == 403, url
        assert response.headers["content-type"].startswith("application/problem+json")
    assert len(_refusals(face)) == before + 5
    # An instance of the KOS's series that the KOS does not list.
    own = other.series[0]
    response = client.get(f"{face.url}/studies/{other.study_uid}/series/{own.series_uid}/instances/"
                          f"{mg.series[0].instances[0].sop_instance_uid}", headers=headers)
    assert response.status_code == 403


def test_unknown_kos_is_403(net: Net, face: ScopedFace, exams: list[Exam], client: httpx.Client) -> None:
    response = client.get(_series_url(face, exams[0]), headers={
        "Accept": ACCEPT_DICOM, "Authorization": f"Bearer {net.token()}", "KOS-SOPInstanceUID": "1.2.3.4.5.6"})
    assert response.status_code == 403


def test_retrieval_through_scope_audits_each_instance_once(net: Net, face: ScopedFace, exams: list[Exam],
                                                           tmp_path: Path) -> None:
    settings = net.settings("site-b", storage={"data_dir": str(tmp_path)})
    retriever = StudyRetriever(settings, HostListPolicy(settings.peers.hosts))
    actor = Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name=None,
                  token=net.token())
    exam = max(exams, key=lambda e: e.instance_count)
    moved = replace(exam, series=tuple(
        replace(s, retrieve_url=_series_url(face, exam, n)) for n, s in enumerate(exam.series)))
    already = Counter(sop for e in face.audit.events(action="wado.instance-served") for sop in e.sop_instance_uids)
    try:
        report = retriever.retrieve(moved, actor, tmp_path / "got")
    finally:
        retriever.close()
    assert report.complete, report
    events = [e for e in face.audit.events(action="wado.instance-served") if e.kos_uid == exam.kos_uid]
    served = Counter(sop for e in events for sop in e.sop_instance_uids) - already
    assert set(served) == exam.sop_instance_uids()
    assert set(served.values()) == {1}
    event = events[-1]
    assert event.rpps == "10101010101" and event.outcome == "success"
    assert event.study_uid == exam.study_uid and event.patient_ins
    assert event.source is not None and event.source.startswith("127.")
