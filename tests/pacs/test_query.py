"""The query builder: keys by keyword, matching values validated per VR, hierarchy enforced."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom import Dataset

from drimbox.errors import InvalidQuery
from drimbox.pacs import QueryLevel, build_query
from drimbox.pacs.query import retrieve_identifier


def test_values_and_return_keys() -> None:
    ds = build_query(
        QueryLevel.STUDY,
        {
            "PatientName": "DUP*",
            "PatientID": None,
            "StudyDate": (dt.date(2024, 1, 1), dt.date(2024, 1, 31)),
            "StudyTime": (dt.time(8, 0), None),
            "StudyInstanceUID": ["1.2.3", "1.2.4"],
            "OtherPatientIDsSequence": {"PatientID": None, "IssuerOfPatientID": "ASIP-SANTE-INS-NIR"},
        },
        return_keys=["AccessionNumber"],
    )
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "DUP*"
    assert ds["PatientID"].is_empty and ds["AccessionNumber"].is_empty
    assert ds.StudyDate == "20240101-20240131"
    assert ds.StudyTime == "080000-"
    assert ds.StudyInstanceUID == ["1.2.3", "1.2.4"]
    assert ds.OtherPatientIDsSequence[0].IssuerOfPatientID == "ASIP-SANTE-INS-NIR"
    assert "SpecificCharacterSet" not in ds


def test_non_ascii_values_declare_utf8() -> None:
    assert build_query(QueryLevel.STUDY, {"PatientName": "BÉRANGER*"}).SpecificCharacterSet == "ISO_IR 192"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"PatientNam": "X"}, r"unknown DICOM keyword 'PatientNam' \(did you mean PatientName"),
        ({"Foo": "X"}, r"unknown DICOM keyword 'Foo'$"),
        ({"StudyDate": "2024-01-01"}, "neither a DA value nor a range"),
        ({"StudyDate": "20240101-20240131-1"}, "neither a DA value nor a range"),
        ({"StudyInstanceUID": "1.2.*"}, "wildcards are not allowed for UI"),
        ({"StudyInstanceUID": "1.02.3"}, "'1.02.3' is not a valid UID"),
        ({"Rows": "5*"}, "wildcards are not allowed for US"),
        ({"PatientID": ["A", "B"]}, "several values are only allowed for UI keys"),
        ({"PatientID": "A\\B"}, "several values are only allowed for UI keys"),
        ({"PatientID": 3}, "an integer cannot match a LO attribute"),
        ({"QueryRetrieveLevel": "IMAGE"}, "set from the level argument"),
        ({"TransferSyntaxUID": None}, "file meta attribute"),
    ],
)
def test_invalid_keys(keys: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidQuery, match=message):
        build_query(QueryLevel.STUDY, keys)


def test_hierarchy() -> None:
    build_query(QueryLevel.SERIES, {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": None})
    with pytest.raises(InvalidQuery, match="a SERIES-level query must name exactly one StudyInstanceUID"):
        build_query(QueryLevel.SERIES, {"StudyInstanceUID": ["1.2.3", "1.2.4"]})
    with pytest.raises(InvalidQuery, match="one StudyInstanceUID and one SeriesInstanceUID"):
        build_query(QueryLevel.IMAGE, {"SOPInstanceUID": None})


def test_a_dataset_is_used_as_is() -> None:
    given = Dataset()
    given.StudyInstanceUID = "1.2.3"
    given.Modality = "MG"  # a lower-level key: the caller's choice when passing a Dataset
    ds = build_query(QueryLevel.SERIES, given)
    assert (ds.QueryRetrieveLevel, ds.Modality) == ("SERIES", "MG")
    assert "QueryRetrieveLevel" not in given


def test_retrieve_identifiers() -> None:
    assert retrieve_identifier("1.2.3").QueryRetrieveLevel == "STUDY"
    assert retrieve_identifier("1.2.3", "1.2.4").QueryRetrieveLevel == "SERIES"
    image = retrieve_identifier("1.2.3", "1.2.4", ["1.2.5", "1.2.6"])
    assert (image.QueryRetrieveLevel, image.SOPInstanceUID) == ("IMAGE", ["1.2.5", "1.2.6"])
    with pytest.raises(InvalidQuery, match="must name the series"):
        retrieve_identifier("1.2.3", None, ["1.2.5"])
    with pytest.raises(InvalidQuery, match="not a valid UID"):
        retrieve_identifier("../../etc")
