"""Summarise C-FIND identifiers of a hierarchical walk as :mod:`drimbox.pacs.models` trees."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom import Dataset

from drimbox.pacs.models import InstanceInfo, SeriesInfo, StudyInfo

__all__ = ["instance_info", "series_info", "study_info"]


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def instance_info(identifier: Dataset) -> InstanceInfo:
    """One IMAGE-level answer."""
    return InstanceInfo(
        sop_class_uid=_str(identifier, "SOPClassUID"),
        sop_instance_uid=str(identifier.SOPInstanceUID),
        instance_number=_int(identifier, "InstanceNumber"),
        rows=_int(identifier, "Rows"),
        columns=_int(identifier, "Columns"),
        number_of_frames=_int(identifier, "NumberOfFrames"),
    )


def _instance_order(info: InstanceInfo) -> tuple[int, int, str]:
    number = info.instance_number
    return (number is None, number or 0, info.sop_instance_uid)


def series_info(identifier: Dataset, instances: Iterable[InstanceInfo]) -> SeriesInfo:
    """One SERIES-level answer and its instances (sorted by Instance Number)."""
    return SeriesInfo(
        series_instance_uid=str(identifier.SeriesInstanceUID),
        modality=_str(identifier, "Modality") or "",
        identifier=identifier,
        instances=tuple(sorted(instances, key=_instance_order)),
    )


def _series_order(info: SeriesInfo) -> tuple[bool, int, str]:
    number = _int(info.identifier, "SeriesNumber")
    return (number is None, number or 0, info.series_instance_uid)


def study_info(identifier: Dataset, series: Iterable[SeriesInfo]) -> StudyInfo:
    """The STUDY-level answer and its series (sorted by Series Number)."""
    return StudyInfo(
        study_instance_uid=str(identifier.StudyInstanceUID),
        identifier=identifier,
        series=tuple(sorted(series, key=_series_order)),
    )
