"""QIDO-RS at every level against the file store; expected values read from the files with pydicom."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gwtest import Corpus
from pydicom import Dataset, dcmread

from dicomweb_gateway import FileStore, GatewaySettings, create_app
from dicomweb_gateway.qido import TRUNCATION_WARNING

Q = "/dicom-web"


def value(result: dict[str, Any], tag: str) -> Any:
    """First value of ``tag`` in a DICOM JSON result (PN as its alphabetic form)."""
    values = result.get(tag, {}).get("Value")
    if not values:
        return None
    first = values[0]
    return first.get("Alphabetic") if isinstance(first, dict) else first


def headers_of(paths: list[Path]) -> list[Dataset]:
    return [dcmread(p, stop_before_pixels=True) for p in paths]


def test_studies_all(client: TestClient, corpus: Corpus) -> None:
    """Every study, with its values and counts as the files say."""
    r = client.get(f"{Q}/studies")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/dicom+json"
    results = {value(s, "0020000D"): s for s in r.json()}
    files = corpus.files()
    by_study: dict[str, list[Dataset]] = defaultdict(list)
    for ds in headers_of(files):
        by_study[ds.StudyInstanceUID].append(ds)
    assert set(results) == set(by_study)
    for uid, instances in by_study.items():
        got, first = results[uid], instances[0]
        assert value(got, "00100020") == first.PatientID
        assert value(got, "00100010") == str(first.PatientName)
        assert value(got, "00080020") == first.StudyDate
        assert value(got, "00080050") == first.AccessionNumber
        assert value(got, "00201208") == len(instances)
        assert value(got, "00201206") == len({ds.SeriesInstanceUID for ds in instances})
        assert got["00080061"]["Value"] == sorted({ds.Modality for ds in instances})
        assert value(got, "00081190") == f"http://testserver{Q}/studies/{uid}"
        assert value(got, "00080056") == "ONLINE"
        assert got["00080201"] == {"vr": "SH"}  # a default return key with no value: present, empty


def test_study_filters(client: TestClient, corpus: Corpus) -> None:
    """PatientID, accession, UID lists, ModalitiesInStudy, wildcard and fuzzy names, date ranges."""
    mg = dcmread(corpus.mammo.files[0], stop_before_pixels=True)

    def uids(**params: str) -> set[str]:
        r = client.get(f"{Q}/studies", params=params)
        assert r.status_code == 200, r.text
        return {value(s, "0020000D") for s in r.json()}

    mammo, prior = corpus.mammo.study_instance_uid, corpus.prior.study_instance_uid
    assert uids(PatientID=mg.PatientID) == {mammo, prior}
    assert uids(AccessionNumber=mg.AccessionNumber) == {mammo}
    assert uids(StudyInstanceUID=f"{mammo},{corpus.ct.study_instance_uid}") == {mammo, corpus.ct.study_instance_uid}
    r = client.get(f"{Q}/studies", params=[("StudyInstanceUID", mammo), ("StudyInstanceUID", prior)])
    assert {value(s, "0020000D") for s in r.json()} == {mammo, prior}
    assert uids(ModalitiesInStudy="CT") == {corpus.ct.study_instance_uid}
    assert uids(ModalitiesInStudy="CT,MR") == {corpus.ct.study_instance_uid, corpus.mr_jpegls.study_instance_uid}
    family = str(mg.PatientName).split("^")[0]
    assert uids(PatientName=f"{family[:3]}*") >= {mammo, prior}
    assert uids(PatientName=f"{family[:3].lower()}*") >= {mammo, prior}  # PN matching ignores case
    assert uids(PatientName=family[:3]) == set()  # no wildcard: the whole name must match
    given = str(mg.PatientName).split("^")[1]
    ascii_given = given.encode("ascii", "ignore").decode()[:2].lower()
    assert uids(PatientName=ascii_given, fuzzymatching="true") >= {mammo, prior}
    assert uids(StudyDate="20240101-20241231") == {prior}
    assert uids(StudyDate="-20241231") == {prior}
    assert mammo in uids(StudyDate="20250101-")
    assert prior not in uids(StudyDate="20250101-")
    assert uids(StudyDate="20250114", PatientID=mg.PatientID) == {mammo}
    assert uids(PatientID="NOBODY") == set()


def test_empty_result_is_200_empty_array(client: TestClient) -> None:
    """No match: 200 and [] (CP-2473)."""
    r = client.get(f"{Q}/studies", params={"PatientID": "NOBODY"})
    assert (r.status_code, r.json()) == (200, [])


def test_includefield(client: TestClient, corpus: Corpus) -> None:
    """By keyword, by tag, repeated, comma-separated, and all."""
    mg = dcmread(corpus.mammo.files[0], stop_before_pixels=True)
    params = [("StudyInstanceUID", corpus.mammo.study_instance_uid), ("includefield", "StudyDescription,00100021"),
              ("includefield", "OtherPatientIDsSequence")]  # fmt: skip
    [study] = client.get(f"{Q}/studies", params=params).json()
    assert value(study, "00081030") == mg.StudyDescription
    assert value(study, "00100021") == mg.IssuerOfPatientID
    assert study["00101002"]["Value"][0]["00100020"]["Value"] == [mg.OtherPatientIDsSequence[0].PatientID]
    assert "00181030" not in study
    [everything] = client.get(
        f"{Q}/studies", params={"StudyInstanceUID": corpus.mammo.study_instance_uid, "includefield": "all"}
    ).json()
    assert value(everything, "00081030") == mg.StudyDescription
    assert "00280010" not in everything  # Rows is an instance attribute, not a study one


def test_series_levels(client: TestClient, corpus: Corpus) -> None:
    """/studies/{s}/series and /series, with counts and series attributes."""
    ct = headers_of(list(corpus.ct.files))
    series = client.get(f"{Q}/studies/{corpus.ct.study_instance_uid}/series").json()
    expected = {ds.SeriesInstanceUID: ds for ds in ct}
    assert {value(s, "0020000E") for s in series} == set(expected)
    for s in series:
        ds = expected[value(s, "0020000E")]
        assert value(s, "00080060") == "CT"
        assert value(s, "00200011") == ds.SeriesNumber
        assert value(s, "0008103E") == ds.SeriesDescription
        assert value(s, "00201209") == sum(1 for x in ct if x.SeriesInstanceUID == ds.SeriesInstanceUID)
        assert value(s, "00081190").endswith(f"/studies/{corpus.ct.study_instance_uid}/series/{ds.SeriesInstanceUID}")
    all_ct = client.get(f"{Q}/series", params={"Modality": "CT"}).json()
    assert {value(s, "0020000E") for s in all_ct} == set(expected)
    assert all(value(s, "00100020") == ct[0].PatientID for s in all_ct)  # study attributes included
    one = client.get(f"{Q}/series", params={"SeriesInstanceUID": ct[0].SeriesInstanceUID}).json()
    assert len(one) == 1


def test_instance_levels(client: TestClient, corpus: Corpus) -> None:
    """The three instance resources, with instance attributes."""
    mg = headers_of(list(corpus.mammo.files))
    study, series = corpus.mammo.study_instance_uid, mg[0].SeriesInstanceUID
    in_series = client.get(f"{Q}/studies/{study}/series/{series}/instances").json()
    in_study = client.get(f"{Q}/studies/{study}/instances").json()
    assert [value(i, "00080018") for i in in_series] == [ds.SOPInstanceUID for ds in mg]
    assert {value(i, "00080018") for i in in_study} == {ds.SOPInstanceUID for ds in mg}
    for got, ds in zip(in_series, mg, strict=True):
        assert value(got, "00080016") == ds.SOPClassUID
        assert value(got, "00200013") == ds.InstanceNumber
        assert (value(got, "00280010"), value(got, "00280011")) == (ds.Rows, ds.Columns)
        assert value(got, "00280100") == ds.BitsAllocated
    assert "00080060" in in_study[0]  # series attributes when the series is not in the path
    one = client.get(f"{Q}/instances", params={"SOPInstanceUID": mg[2].SOPInstanceUID}).json()
    assert [value(i, "00080018") for i in one] == [mg[2].SOPInstanceUID]
    assert value(one[0], "00100020") == mg[2].PatientID


def test_limit_offset_and_warning(store: FileStore, corpus: Corpus) -> None:
    """limit/offset page through results; the Warning says when more exist; max_results caps."""
    with TestClient(create_app(store, GatewaySettings(max_results=3))) as c:
        everything = [value(s, "0020000D") for s in c.get(f"{Q}/studies", params={"limit": "100"}).json()]
        assert len(everything) == 3
        capped = c.get(f"{Q}/studies")
        assert capped.headers["warning"] == f'299 testserver: "{TRUNCATION_WARNING}"'
        page1 = c.get(f"{Q}/studies", params={"limit": "2"})
        page2 = c.get(f"{Q}/studies", params={"limit": "2", "offset": "2"})
        page3 = c.get(f"{Q}/studies", params={"limit": "2", "offset": "4"})
    assert "warning" in page1.headers and "warning" in page2.headers and "warning" not in page3.headers
    ids = [value(s, "0020000D") for p in (page1, page2, page3) for s in p.json()]
    assert len(ids) == len(set(ids)) == 5
    assert everything == ids[:3]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/studies", {"Foo": "x"}, "neither a DICOM attribute"),
        ("/studies", {"0009BEEF": "x"}, "not a known DICOM attribute"),
        ("/studies", {"StudyInstanceUID": "1.02.3"}, "not a valid UID"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "not a valid UID"),
        ("/studies", {"StudyInstanceUID": "1." + "2" * 70}, "longer than 64"),
        ("/studies", {"StudyInstanceUID": "1.2,,1.3"}, "empty item"),
        ("/studies", {"StudyDate": "20251301"}, "not a valid value"),
        ("/studies", {"StudyDate": "2025-"}, "neither a value nor a range"),
        ("/studies", {"StudyDate": "20250201-20250101"}, "ends before it starts"),
        ("/studies", {"StudyDate": "2025*"}, "wildcards are not allowed"),
        ("/studies", {"StudyTime": "2561"}, "not a valid value"),
        ("/studies", {"limit": "abc"}, "limit"),
        ("/studies", {"limit": "0"}, "at least 1"),
        ("/studies", {"offset": "-1"}, "offset"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ("/studies", {"includefield": "NotAKeyword"}, "neither a DICOM attribute"),
        ("/studies", {"SOPInstanceUID": "1.2.3"}, "IMAGE-level attribute"),
        ("/studies", {"Modality": "CT"}, "ModalitiesInStudy"),
        ("/series", {"SOPInstanceUID": "1.2.3"}, "IMAGE-level"),
        ("/studies", {"ReferencedStudySequence.StudyInstanceUID": "1.2"}, "sequence"),
        ("/studies", {"NumberOfStudyRelatedInstances": "many"}, "integer"),
        ("/studies/1.2.03/series", {}, "not a valid UID"),
    ],
)
def test_bad_queries_are_400(client: TestClient, path: str, params: dict[str, str], message: str) -> None:
    """Every malformed query: 400 with a message that says what is wrong."""
    r = client.get(Q + path, params=params)
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]
    assert r.headers["warning"].startswith("299 ")
