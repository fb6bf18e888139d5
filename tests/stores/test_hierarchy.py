"""The hierarchical walk, against a small in-memory strict archive that records every identifier.

The archive refuses what DCMTK's ``dcmqrscp --check-find`` refuses (a key of another level, a
non-unique parent key) and, like dcmqrscp, neither returns nor matches ModalitiesInStudy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import Dataset
from pydicom.tag import Tag

from dicomweb_gateway import QueryLevel, SearchQuery
from dicomweb_gateway.attributes import level_of
from dicomweb_gateway.query import parse_search
from drimbox.stores.hierarchy import hierarchical_search, split_keys

_UNIQUE = {
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}
_ORDER = [QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE]


def _instance(study: str, series: str, sop: str, modality: str, name: str) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.Modality, ds.PatientName, ds.PatientID, ds.StudyDate = modality, name, f"ID-{study}", "20250101"
    ds.SeriesNumber, ds.InstanceNumber = 1, int(sop.rsplit(".", 1)[1])
    return ds


class StrictArchive:
    """Answers hierarchical C-FINDs only; records ``(level, keywords)`` of each identifier."""

    def __init__(self) -> None:
        self.instances = [
            _instance("1.1", "1.1.1", "1.1.1.1", "MG", "A^X"),
            _instance("1.1", "1.1.1", "1.1.1.2", "MG", "A^X"),
            _instance("1.2", "1.2.1", "1.2.1.1", "CT", "B^Y"),
            _instance("1.2", "1.2.2", "1.2.2.1", "CT", "B^Y"),
            _instance("1.2", "1.2.2", "1.2.2.2", "CT", "B^Y"),
        ]
        self.log: list[tuple[QueryLevel, frozenset[str], str]] = []
        """(level, keywords, study UID) of each identifier received."""

    def find(self, level: QueryLevel, identifier: Dataset) -> Iterator[Dataset]:
        keywords = frozenset(e.keyword for e in identifier if e.keyword != "SpecificCharacterSet")
        self.log.append((level, keywords, str(identifier.get("StudyInstanceUID", ""))))
        depth = _ORDER.index(level)
        for keyword in keywords:
            kw_level = level_of(keyword)
            if keyword in ("InstanceAvailability", "TimezoneOffsetFromUTC"):
                continue
            if _ORDER.index(kw_level) > depth:
                raise AssertionError(f"{keyword} ({kw_level}) in a {level} query: refused with 0xA900")
            if _ORDER.index(kw_level) < depth and keyword != _UNIQUE[kw_level]:
                raise AssertionError(f"{keyword} above the level in a {level} query: refused with 0xA900")
        for above in _ORDER[:depth]:
            value = identifier.get(_UNIQUE[above])
            assert isinstance(value, str) and value, f"{level} query without one {_UNIQUE[above]}"
        seen: set[str] = set()
        for inst in self.instances:
            key = str(inst.get(_UNIQUE[level]))
            if key in seen or not self._matches(identifier, inst):
                continue
            seen.add(key)
            answer = Dataset()
            for keyword in keywords:
                if keyword != "ModalitiesInStudy" and keyword in inst:
                    answer.add(inst[keyword])
            yield answer

    @staticmethod
    def _matches(identifier: Dataset, inst: Dataset) -> bool:
        for elem in identifier:
            if elem.keyword in ("ModalitiesInStudy", "SpecificCharacterSet") or not elem.value:
                continue
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            have = str(inst.get(elem.keyword, ""))
            if not any(have == str(v) or (str(v).endswith("*") and have.startswith(str(v)[:-1])) for v in values):
                return False
        return True


def _search(
    level: QueryLevel, params: dict[str, str], study: str | None = None, series: str | None = None
) -> SearchQuery:
    return parse_search(level, params.items(), study_uid=study, series_uid=series).query


def test_study_query_keys_are_study_keys_only() -> None:
    keys = split_keys(_search(QueryLevel.STUDY, {"PatientName": "A*", "includefield": "Modality,StudyDescription"}))
    assert set(keys) == {QueryLevel.STUDY}
    names = keys[QueryLevel.STUDY].keywords()
    assert "Modality" not in names and "StudyDescription" in names and "ModalitiesInStudy" in names
    assert Tag("RetrieveURL") not in keys[QueryLevel.STUDY].returns


def test_modalities_in_study_is_computed_and_matched_when_the_archive_cannot() -> None:
    archive = StrictArchive()
    found = list(hierarchical_search(archive.find, _search(QueryLevel.STUDY, {"ModalitiesInStudy": "CT"})))
    assert [str(ds.StudyInstanceUID) for ds in found] == ["1.2"]
    assert found[0].ModalitiesInStudy == "CT"
    assert (found[0].NumberOfStudyRelatedSeries, found[0].NumberOfStudyRelatedInstances) == (2, 3)


def test_series_across_studies_walks_study_then_series() -> None:
    archive = StrictArchive()
    query = _search(QueryLevel.SERIES, {"Modality": "CT", "PatientID": "ID-1.2"})
    found = list(hierarchical_search(archive.find, query))
    assert sorted(str(ds.SeriesInstanceUID) for ds in found) == ["1.2.1", "1.2.2"]
    assert all(str(ds.PatientID) == "ID-1.2" for ds in found)
    assert [level for level, _, _ in archive.log].count(QueryLevel.STUDY) == 1
    assert archive.log[0][0] == QueryLevel.STUDY and "Modality" not in archive.log[0][1]
    # Below the study level, only the matching study is asked about.
    assert {study for _, _, study in archive.log[1:]} == {"1.2"}


def test_study_scoped_series_skip_the_study_level() -> None:
    archive = StrictArchive()
    found = list(hierarchical_search(archive.find, _search(QueryLevel.SERIES, {}, study="1.2")))
    assert len(found) == 2
    assert QueryLevel.STUDY not in [level for level, _, _ in archive.log]
    assert "NumberOfSeriesRelatedInstances" in archive.log[0][1]
    # The archive does not count: the walk counts each series' instances itself.
    assert [int(ds.NumberOfSeriesRelatedInstances) for ds in found] == [1, 2]


def test_study_instances_go_series_by_series() -> None:
    archive = StrictArchive()
    found = list(hierarchical_search(archive.find, _search(QueryLevel.IMAGE, {}, study="1.2")))
    assert sorted(str(ds.SOPInstanceUID) for ds in found) == ["1.2.1.1", "1.2.2.1", "1.2.2.2"]
    assert [level for level, _, _ in archive.log][:2] == [QueryLevel.SERIES, QueryLevel.IMAGE]


@pytest.mark.parametrize("limit", [1, 2])
def test_all_instances_stop_when_closed(limit: int) -> None:
    archive = StrictArchive()
    it = hierarchical_search(archive.find, _search(QueryLevel.IMAGE, {}))
    taken = [next(it) for _ in range(limit)]
    it.close()  # type: ignore[attr-defined]
    assert len(taken) == limit
    # The first study had enough: nothing below the study level was asked of the second one.
    assert {study for level, _, study in archive.log if level != QueryLevel.STUDY} == {"1.1"}
