"""QIDO requests for Orthanc 1.10: values literal (it does not percent-decode), /tools/find otherwise."""

from __future__ import annotations

from dicomweb_gateway import QueryLevel, SearchQuery
from dicomweb_gateway.query import parse_search
from drimbox.stores.orthanc_query import find_body, plan_qido, uid_batches


def _query(
    level: QueryLevel, params: dict[str, str], study: str | None = None, series: str | None = None
) -> SearchQuery:
    return parse_search(level, params.items(), study_uid=study, series_uid=series).query


def test_wildcards_and_carets_are_sent_literally() -> None:
    plan = plan_qido(_query(QueryLevel.STUDY, {"PatientName": "DUPONT^MA*", "StudyDate": "20240101-20241231"}))
    assert plan.path == "/studies"
    assert "PatientName=DUPONT^MA*" in plan.params
    assert "StudyDate=20240101-20241231" in plan.params
    assert not plan.needs_find
    assert not any("%" in p for p in plan.params)


def test_uid_lists_are_comma_separated_and_path_uids_not_repeated() -> None:
    plan = plan_qido(_query(QueryLevel.IMAGE, {"SOPInstanceUID": "1.2.3,1.2.4"}, study="1.2", series="1.2.9"))
    assert plan.path == "/studies/1.2/series/1.2.9/instances"
    assert "SOPInstanceUID=1.2.3,1.2.4" in plan.params
    assert not any(p.startswith(("StudyInstanceUID", "SeriesInstanceUID")) for p in plan.params)


def test_includefield_lists_the_return_tags_except_what_the_gateway_computes() -> None:
    plan = plan_qido(_query(QueryLevel.STUDY, {"includefield": "StudyDescription"}))
    [include] = [p for p in plan.params if p.startswith("includefield=")]
    fields = include.removeprefix("includefield=").split(",")
    assert "00081030" in fields and "00100010" in fields
    assert "00081190" not in fields and "00080005" not in fields  # RetrieveURL, SpecificCharacterSet


def test_values_orthanc_cannot_read_in_a_url_go_through_tools_find() -> None:
    query = _query(QueryLevel.SERIES, {"PatientName": "ROUSSEAU^Anaïs", "Modality": "CT"})
    plan = plan_qido(query)
    assert plan.needs_find
    assert not any(p.startswith("PatientName=") for p in plan.params)
    assert find_body(query) == {
        "Level": "Series", "Query": {"PatientName": "ROUSSEAU^Anaïs", "Modality": "CT"}, "Expand": True}  # fmt: skip
    spaces = plan_qido(_query(QueryLevel.STUDY, {"StudyDescription": "Mammographie de*"}))
    assert spaces.needs_find


def test_matched_uids_are_asked_in_batches() -> None:
    query = _query(QueryLevel.STUDY, {"PatientName": "É*"})
    uids = [f"1.2.{n}" for n in range(100)]
    batches = list(uid_batches(query, uids))
    assert len(batches) == 3
    assert batches[0].path == "/studies"
    assert batches[0].params[0] == "StudyInstanceUID=" + ",".join(uids[:40])
