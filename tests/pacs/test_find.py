"""C-ECHO and C-FIND against real PACSes: the hierarchical walk, matching, key validation."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from drimbox.errors import InvalidQuery, StudyNotFound
from drimbox.pacs import PacsClient, QueryLevel
from drimbox.testdata import GeneratedStudy

from .peers import Pacs


def test_echo(client: PacsClient) -> None:
    client.echo()
    client.echo()  # on the pooled association


def test_walk_study_matches_the_files(
    client: PacsClient, pacs: Pacs, mg_study: GeneratedStudy, ct_study: GeneratedStudy
) -> None:
    pacs.load([*mg_study.files, *ct_study.files])
    for study in (mg_study, ct_study):
        walk = client.walk_study(study.study_instance_uid)

        sources = [dcmread(p, stop_before_pixels=True) for p in study.files]
        assert walk.study_instance_uid == study.study_instance_uid
        assert walk.identifier.AccessionNumber == study.accession_number
        assert [s.series_instance_uid for s in walk.series] == list(study.series_uids())
        assert walk.instance_count == len(study.files)
        assert walk.sop_instance_uids() == set(study.sop_instance_uids())
        by_uid = {i.sop_instance_uid: i for s in walk.series for i in s.instances}
        for ds in sources:
            info = by_uid[ds.SOPInstanceUID]
            assert info.instance_number == ds.InstanceNumber
            if pacs.name == "orthanc":
                assert info.sop_class_uid == ds.SOPClassUID
                assert (info.rows, info.columns) == (ds.Rows, ds.Columns)
                assert info.number_of_frames == ds.get("NumberOfFrames")
            else:  # dcmqrscp's index holds none of these optional keys
                assert (info.sop_class_uid, info.rows, info.columns) == (None, None, None)
        for series in walk.series:
            assert series.modality == study.modality
            numbers = [i.instance_number or 0 for i in series.instances]
            assert numbers == sorted(numbers)


def test_walk_unknown_study(client: PacsClient, pacs: Pacs) -> None:
    with pytest.raises(StudyNotFound, match="has no study 1.2.3.4"):
        client.walk_study("1.2.3.4")


def test_find_studies_by_accession(
    client: PacsClient, pacs: Pacs, mg_study: GeneratedStudy, mg_prior: GeneratedStudy
) -> None:
    pacs.load([*mg_study.files, *mg_prior.files])
    [match] = client.find_studies(AccessionNumber=mg_study.accession_number)
    assert match.StudyInstanceUID == mg_study.study_instance_uid
    assert match.PatientID == mg_study.patient.ipp


def test_wildcard_and_date_range_matching(
    client: PacsClient, pacs: Pacs, mg_study: GeneratedStudy, mg_prior: GeneratedStudy
) -> None:
    pacs.load([*mg_study.files, *mg_prior.files])
    family = mg_study.patient.family

    def studies(**keys: object) -> set[str]:
        answers = client.find(QueryLevel.STUDY, {"StudyInstanceUID": None, **keys})
        return {str(a.StudyInstanceUID) for a in answers}

    both = {mg_study.study_instance_uid, mg_prior.study_instance_uid}
    assert studies(StudyDate="20240101-20241231") == {mg_prior.study_instance_uid}
    assert studies(StudyDate="20250101-") == {mg_study.study_instance_uid}
    assert studies(StudyDate="-20250131") == both
    assert studies(PatientName=f"{family[:3]}*") >= {mg_study.study_instance_uid}
    assert studies(PatientName=f"{family[:-1]}?*") >= {mg_study.study_instance_uid}
    assert studies(PatientID=mg_study.patient.ipp) == {mg_study.study_instance_uid}
    assert studies(StudyInstanceUID=sorted(both)) == both  # list of UID matching
    assert studies(PatientID="NOBODY*") == set()


def test_find_image_level_names_one_series(client: PacsClient, pacs: Pacs, ct_study: GeneratedStudy) -> None:
    pacs.load(ct_study.files)
    series_uid = ct_study.series_uids()[1]
    answers = list(
        client.find(
            QueryLevel.IMAGE,
            {
                "StudyInstanceUID": ct_study.study_instance_uid,
                "SeriesInstanceUID": series_uid,
                "SOPInstanceUID": None,
                "InstanceNumber": None,
            },
        )
    )
    expected = {i.sop_instance_uid for i in ct_study.instances if i.series_instance_uid == series_uid}
    assert {a.SOPInstanceUID for a in answers} == expected


def test_unknown_keyword_is_refused_before_sending(client: PacsClient) -> None:
    with pytest.raises(InvalidQuery, match=r"unknown DICOM keyword 'PatientsName' \(did you mean PatientName"):
        client.find(QueryLevel.STUDY, {"PatientsName": "DUPONT*"})


def test_non_hierarchical_query_is_refused(client: PacsClient) -> None:
    with pytest.raises(InvalidQuery, match="IMAGE-level query must name exactly one SeriesInstanceUID"):
        client.find(QueryLevel.IMAGE, {"StudyInstanceUID": "1.2.3", "SOPInstanceUID": None})


def test_closing_a_find_early_keeps_the_association_usable(
    client: PacsClient, pacs: Pacs, ct_study: GeneratedStudy
) -> None:
    pacs.load(ct_study.files)
    query = {
        "StudyInstanceUID": ct_study.study_instance_uid,
        "SeriesInstanceUID": ct_study.series_uids()[0],
        "SOPInstanceUID": None,
    }
    answers = client.find(QueryLevel.IMAGE, query)
    next(answers)
    answers.close()  # C-CANCEL, remaining responses read
    assert len(list(client.find(QueryLevel.IMAGE, query))) == 5
