"""Build and check C-FIND / C-GET / C-MOVE identifiers of the Study Root model (PS3.4 C.2.2, C.4.1).

Keys are given by DICOM keyword and validated before anything is sent: an unknown keyword, a value
that the attribute's VR cannot match, or a query that breaks the hierarchical model raises
:class:`~drimbox.errors.InvalidQuery` (a PACS would silently ignore most of these and answer
"everything", cf. ORTHANC-NOTES pitfall 3).

Values, per PS3.4 C.2.2.2:

- ``None`` or ``""``: a return key (universal matching);
- a string: single value matching, or wildcard matching with ``*``/``?`` (not for UI, dates, times
  or numbers), or a range ``"20240101-20240131"``, ``"-20240131"``, ``"20240101-"`` for DA/TM/DT;
- a list or tuple of UIDs for a UI key: list of UID matching;
- a :class:`datetime.date` / :class:`~datetime.time` / :class:`~datetime.datetime`, or a 2-tuple of
  them (either end ``None``) for a DA/TM/DT range;
- an ``int`` for numeric keys (IS, US, UL, SS, SL);
- a mapping (or ``Dataset``) for a sequence key: sequence matching with one item; ``None`` returns it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping
from functools import cache

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from pydicom.sequence import Sequence

from drimbox.errors import InvalidQuery
from drimbox.pacs._uids import is_uid
from drimbox.pacs.models import QueryLevel

__all__ = ["RETURN_KEYS", "build_query", "check_hierarchy", "retrieve_identifier"]

RETURN_KEYS: Mapping[QueryLevel, tuple[str, ...]] = {
    QueryLevel.STUDY: (
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "StudyDescription",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    QueryLevel.SERIES: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
    ),
    QueryLevel.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
    ),
}
"""Keys the hierarchical walk asks for at each level (the PACS may not return all of them)."""

_WILDCARD = re.compile(r"[*?]")
_DA = r"\d{8}"
_TM = r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"
_DT = r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"
_RANGE = {vr: re.compile(rf"({p})|({p})?-({p})?") for vr, p in (("DA", _DA), ("TM", _TM), ("DT", _DT))}
_NUMERIC = frozenset({"IS", "DS", "US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"})
_NO_WILDCARDS = _NUMERIC | frozenset({"UI", "DA", "TM", "DT"})
_LEVEL_UIDS = {
    QueryLevel.STUDY: ("StudyInstanceUID",),
    QueryLevel.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    QueryLevel.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
_Scalar = str | int | dt.date | dt.time | None


@cache
def _keywords() -> tuple[str, ...]:
    return tuple(keyword_dict)


def _vr_of(keyword: str) -> str:
    tag = tag_for_keyword(keyword) if keyword else None
    if tag is None or keyword == "QueryRetrieveLevel":
        if keyword == "QueryRetrieveLevel":
            raise InvalidQuery("QueryRetrieveLevel is set from the level argument, not from the keys")
        close = difflib.get_close_matches(keyword, _keywords(), n=3, cutoff=0.75)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InvalidQuery(f"unknown DICOM keyword {keyword!r}{hint}")
    if tag >> 16 in (0x0000, 0x0002):
        raise InvalidQuery(f"{keyword} is a command or file meta attribute, not a query key")
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]


def _temporal(keyword: str, vr: str, value: dt.date | dt.time | None) -> str:
    if value is None:
        return ""
    if vr == "DA" and isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d")
    if vr == "TM" and isinstance(value, dt.time):
        return value.strftime("%H%M%S")
    if vr == "DT" and isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    raise InvalidQuery(f"{keyword}: a {type(value).__name__} cannot match a {vr} attribute")


def _text(keyword: str, vr: str, value: str) -> str:
    if vr in _RANGE:
        if value and not _RANGE[vr].fullmatch(value):
            raise InvalidQuery(
                f"{keyword}: {value!r} is neither a {vr} value nor a range such as "
                f"'20240101-20240131' (PS3.4 C.2.2.2.5)"
            )
        return value
    if vr in _NO_WILDCARDS and _WILDCARD.search(value):
        raise InvalidQuery(f"{keyword}: wildcards are not allowed for {vr} attributes (PS3.4 C.2.2.2.4)")
    if vr == "UI":
        bad = [uid for uid in value.split("\\") if not is_uid(uid)]
        if value and bad:
            raise InvalidQuery(f"{keyword}: {bad[0]!r} is not a valid UID")
    elif "\\" in value:
        raise InvalidQuery(f"{keyword}: several values are only allowed for UI keys (list of UID matching)")
    return value


def _value(keyword: str, vr: str, value: object) -> object:
    if vr == "SQ":
        if value is None:
            return Sequence()
        if isinstance(value, Mapping | Dataset):
            return Sequence([value if isinstance(value, Dataset) else _dataset(value)])
        raise InvalidQuery(f"{keyword}: a sequence key takes None or one item (a mapping of keywords)")
    if value is None:
        return None
    if isinstance(value, str):
        return _text(keyword, vr, value)
    if isinstance(value, bool):
        raise InvalidQuery(f"{keyword}: a bool is not a DICOM value")
    if isinstance(value, int):
        if vr not in _NUMERIC:
            raise InvalidQuery(f"{keyword}: an integer cannot match a {vr} attribute")
        return value
    if isinstance(value, dt.date | dt.time):
        return _temporal(keyword, vr, value)
    if isinstance(value, list | tuple):
        if vr in _RANGE and len(value) == 2:
            start, end = (_temporal(keyword, vr, v) for v in value)
            if not start and not end:
                return ""
            return f"{start}-{end}"
        if vr == "UI" and all(isinstance(v, str) for v in value):
            return _text(keyword, vr, "\\".join(value))
        raise InvalidQuery(
            f"{keyword}: several values are only allowed for UI keys (list of UID matching) "
            f"or as a (start, end) pair for DA/TM/DT ranges"
        )
    raise InvalidQuery(f"{keyword}: unsupported value type {type(value).__name__}")


def _dataset(keys: Mapping[str, object]) -> Dataset:
    ds = Dataset()
    for keyword, raw in keys.items():
        vr = _vr_of(keyword)
        value = _value(keyword, vr, raw)
        ds.add_new(keyword, vr, value)
    if any(isinstance(v, str) and not v.isascii() for v in keys.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def build_query(level: QueryLevel, keys: Mapping[str, object] | Dataset, *, return_keys: Iterable[str] = ()) -> Dataset:
    """Return a C-FIND identifier at ``level`` with ``keys`` (matching) and ``return_keys`` (empty).

    A ``Dataset`` is copied as is (its keys are the caller's responsibility) and gets the level.

    Raises
    ------
    InvalidQuery
        For an unknown keyword, a value its VR cannot match, or a query that is not hierarchical
        (see :func:`check_hierarchy`).
    """
    if isinstance(keys, Dataset):
        ds = Dataset()
        ds.update(keys)
    else:
        merged: dict[str, object] = dict.fromkeys(return_keys)
        merged.update(keys)
        ds = _dataset(merged)
    ds.QueryRetrieveLevel = str(level)
    check_hierarchy(level, ds)
    return ds


def _single_uid(ds: Dataset, keyword: str) -> bool:
    value = ds.get(keyword)
    return isinstance(value, str) and is_uid(value)


def check_hierarchy(level: QueryLevel, ds: Dataset) -> None:
    """Refuse a query that the hierarchical model does not allow (PS3.4 C.4.1.2.1, C.4.1.3.1.1).

    Below STUDY level the unique key of every level above must be a single value: the node never
    negotiates relational queries, so a SERIES query names one study and an IMAGE query one study
    and one series.
    """
    above = _LEVEL_UIDS[level][:-1]
    missing = [keyword for keyword in above if not _single_uid(ds, keyword)]
    if missing:
        article = "an" if level is QueryLevel.IMAGE else "a"
        raise InvalidQuery(
            f"{article} {level}-level query must name exactly one {' and one '.join(missing)} "
            f"(hierarchical query, PS3.4 C.4.1.3.1.1)"
        )


def retrieve_identifier(
    study_uid: str, series_uid: str | None = None, sop_instance_uids: Iterable[str] = ()
) -> Dataset:
    """The C-GET/C-MOVE identifier for a study, a series, or some instances of one series."""
    keys: dict[str, object] = {"StudyInstanceUID": study_uid}
    level = QueryLevel.STUDY
    if series_uid is not None:
        keys["SeriesInstanceUID"] = series_uid
        level = QueryLevel.SERIES
    uids = list(sop_instance_uids)
    if uids:
        if series_uid is None:
            raise InvalidQuery("an IMAGE-level retrieve must name the series of its instances")
        keys["SOPInstanceUID"] = uids
        level = QueryLevel.IMAGE
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if keyword in keys and not is_uid(keys[keyword]):
            raise InvalidQuery(f"{keyword}: {keys[keyword]!r} is not a valid UID")
    return build_query(level, keys)
