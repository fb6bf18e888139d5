"""What a retrieval requests and expects, from the walk."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, MRImageStorage

from drimbox.pacs import InstanceInfo, SeriesInfo, StudyInfo
from drimbox.pacs.selection import select


def _walk() -> StudyInfo:
    ct = SeriesInfo(
        "1.2.1", "CT", Dataset(), (InstanceInfo(CTImageStorage, "1.2.1.1"), InstanceInfo(CTImageStorage, "1.2.1.2"))
    )
    mr = SeriesInfo("1.2.2", "MR", Dataset(), (InstanceInfo(None, "1.2.2.1"),))  # PACS gave no SOP class
    return StudyInfo("1.2", Dataset(), (ct, mr))


def test_study_selection() -> None:
    selection = select(_walk())
    [identifier] = selection.identifiers
    assert (identifier.QueryRetrieveLevel, identifier.StudyInstanceUID) == ("STUDY", "1.2")
    assert selection.expected == {"1.2.1.1", "1.2.1.2", "1.2.2.1"}
    assert {CTImageStorage, MRImageStorage} <= selection.sop_classes
    assert EnhancedCTImageStorage not in selection.sop_classes  # CT classes were reported: no guessing


def test_series_and_instance_selection() -> None:
    series = select(_walk(), "1.2.2")
    assert [i.QueryRetrieveLevel for i in series.identifiers] == ["SERIES"]
    assert series.expected == {"1.2.2.1"}

    some = select(_walk(), None, ["1.2.1.2", "1.2.2.1", "9.9"])
    assert [(i.SeriesInstanceUID, i.SOPInstanceUID) for i in some.identifiers] == [
        ("1.2.1", "1.2.1.2"),
        ("1.2.2", "1.2.2.1"),
    ]
    assert some.expected == {"1.2.1.2", "1.2.2.1", "9.9"}  # 9.9 is in no series: it will be reported missing
