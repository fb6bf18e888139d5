"""QIDO-RS at every level through the gateway, over each backend; expected values from pydicom reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom import Dataset
from pydicom.tag import Tag
from storetest import Corpus, Pacs, read

from dicomweb_gateway import DicomStore, create_app
from dicomweb_gateway.matching import element_values
from drimbox.testdata import GeneratedStudy


@pytest.fixture()
def client(store: DicomStore) -> Iterator[TestClient]:
    """A gateway over the store under test."""
    with TestClient(create_app(store)) as c:
        yield c


def _qido(client: TestClient, path: str, **params: Any) -> list[Dataset]:
    response = client.get(f"/dicom-web{path}", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    return [Dataset.from_json(item) for item in response.json()]


def _by(results: list[Dataset], keyword: str) -> dict[str, Dataset]:
    return {str(ds.get(keyword)): ds for ds in results}


def _values(ds: Dataset, keyword: str) -> list[str]:
    return element_values(ds.get(Tag(keyword)))


def _study_values(study: GeneratedStudy) -> dict[str, object]:
    first = read(study.files[0])
    return {
        "PatientID": first.PatientID,
        "PatientName": str(first.PatientName),
        "PatientBirthDate": first.PatientBirthDate,
        "PatientSex": first.PatientSex,
        "StudyDate": first.StudyDate,
        "StudyTime": first.StudyTime,
        "AccessionNumber": first.AccessionNumber,
        "StudyID": first.StudyID,
    }


def test_studies_carry_the_stored_values_and_computed_counts(client: TestClient, corpus: Corpus) -> None:
    found = _by(_qido(client, "/studies"), "StudyInstanceUID")
    assert set(found) == {s.study_instance_uid for s in corpus.studies}
    for study in corpus.studies:
        answer = found[study.study_instance_uid]
        for keyword, expected in _study_values(study).items():
            assert str(answer.get(keyword)) == str(expected), (study.modality, keyword)
        assert _values(answer, "ModalitiesInStudy") == [study.modality]
        assert int(answer.NumberOfStudyRelatedSeries) == len(study.series_uids())
        assert int(answer.NumberOfStudyRelatedInstances) == len(study.files)
        assert answer.RetrieveURL.endswith(f"/dicom-web/studies/{study.study_instance_uid}")


@pytest.mark.parametrize(
    "make_filter",
    [
        pytest.param(lambda s: {"PatientID": s.patient.ipp}, id="patient-id"),
        pytest.param(lambda s: {"PatientName": f"{s.patient.family}*"}, id="name-wildcard"),
        pytest.param(lambda s: {"PatientName": f"{s.patient.family}^{s.patient.given}"}, id="name-exact-accented"),
        pytest.param(lambda s: {"AccessionNumber": s.accession_number}, id="accession"),
        pytest.param(lambda s: {"StudyDate": f"{s.study_date}-{s.study_date}"}, id="date-range"),
        pytest.param(lambda s: {"ModalitiesInStudy": s.modality}, id="modalities-in-study"),
        pytest.param(lambda s: {"StudyInstanceUID": s.study_instance_uid}, id="uid"),
    ],
)
def test_study_matching(client: TestClient, corpus: Corpus, make_filter: Any) -> None:
    for study in corpus.studies:
        found = _qido(client, "/studies", **make_filter(study))
        assert [str(ds.StudyInstanceUID) for ds in found] == [study.study_instance_uid]


def test_study_uid_list_and_no_match(client: TestClient, corpus: Corpus) -> None:
    uids = [corpus.mammo.study_instance_uid, corpus.ct.study_instance_uid]
    assert {str(ds.StudyInstanceUID) for ds in _qido(client, "/studies", StudyInstanceUID=",".join(uids))} == set(uids)
    assert _qido(client, "/studies", PatientID="NOBODY") == []


def test_series_of_a_study(client: TestClient, corpus: Corpus, pacs: Pacs) -> None:
    study = corpus.ct
    found = _by(_qido(client, f"/studies/{study.study_instance_uid}/series"), "SeriesInstanceUID")
    assert set(found) == set(study.series_uids())
    for series_uid, answer in found.items():
        files = [i.path for i in study.instances if i.series_instance_uid == series_uid]
        first = read(files[0])
        assert answer.Modality == "CT"
        assert int(answer.SeriesNumber) == int(first.SeriesNumber)
        if pacs.full_answers:  # dcmqrscp's index does not keep SeriesDescription
            assert str(answer.get("SeriesDescription", "")) == str(first.get("SeriesDescription", ""))
        assert int(answer.NumberOfSeriesRelatedInstances) == len(files)


def test_series_across_studies_walks_the_studies(client: TestClient, corpus: Corpus) -> None:
    found = _qido(client, "/series", Modality="MG")
    assert [str(ds.SeriesInstanceUID) for ds in found] == list(corpus.mammo.series_uids())
    # /series answers carry the study's attributes too (PS3.18 Table 10.6.3-4).
    assert str(found[0].PatientID) == corpus.mammo.patient.ipp
    assert str(found[0].StudyInstanceUID) == corpus.mammo.study_instance_uid
    everything = _qido(client, "/series")
    assert len(everything) == sum(len(s.series_uids()) for s in corpus.studies)


def test_instances_of_a_series(client: TestClient, corpus: Corpus, pacs: Pacs) -> None:
    study = corpus.ct
    series_uid = study.series_uids()[1]
    found = _by(_qido(client, f"/studies/{study.study_instance_uid}/series/{series_uid}/instances"), "SOPInstanceUID")
    expected = [i for i in study.instances if i.series_instance_uid == series_uid]
    assert set(found) == {i.sop_instance_uid for i in expected}
    for instance in expected:
        answer, source = found[instance.sop_instance_uid], read(instance.path)
        assert int(answer.InstanceNumber) == int(source.InstanceNumber)
        if pacs.full_answers:
            assert (answer.SOPClassUID, answer.Rows, answer.Columns) == (
                source.SOPClassUID, source.Rows, source.Columns)  # fmt: skip


def test_instances_of_a_study_and_of_everything(client: TestClient, corpus: Corpus) -> None:
    study = corpus.ct
    found = _qido(client, f"/studies/{study.study_instance_uid}/instances")
    assert {str(ds.SOPInstanceUID) for ds in found} == set(study.sop_instance_uids())
    # Study-scoped instance answers name their series (walked series by series).
    assert {str(ds.SeriesInstanceUID) for ds in found} == set(study.series_uids())
    one = corpus.mammo.instances[2]
    alone = _qido(client, "/instances", SOPInstanceUID=one.sop_instance_uid)
    assert [str(ds.SOPInstanceUID) for ds in alone] == [one.sop_instance_uid]
    assert str(alone[0].PatientID) == corpus.mammo.patient.ipp


def test_limit_offset_and_truncation_warning(client: TestClient, corpus: Corpus) -> None:
    response = client.get("/dicom-web/studies", params={"limit": 1})
    assert len(response.json()) == 1
    assert response.headers["warning"].startswith("299")
    second = client.get("/dicom-web/studies", params={"limit": 1, "offset": 1}).json()
    assert second != response.json()
    assert len(client.get("/dicom-web/studies", params={"offset": 10}).json()) == 0


def test_includefield_returns_a_non_default_attribute(client: TestClient, corpus: Corpus) -> None:
    study = corpus.mammo
    found = _qido(client, "/studies", StudyInstanceUID=study.study_instance_uid, includefield="StudyDescription")
    assert str(found[0].StudyDescription) == str(read(study.files[0]).StudyDescription)


def test_level_mismatch_is_refused_before_the_pacs(client: TestClient, corpus: Corpus) -> None:
    # Modality is a series attribute: a study search must use ModalitiesInStudy (DCMTK refuses it).
    response = client.get("/dicom-web/studies", params={"Modality": "CT"})
    assert response.status_code == 400
    assert "ModalitiesInStudy" in response.json()["detail"]
