"""QIDO-RS query parameters → a validated :class:`~dicomweb_gateway.backend.SearchQuery` (PS3.18 §8.3.4).

Every problem is a 400 that names the parameter: an unknown attribute, an attribute of a lower
level than the search, a malformed UID, date, time or number, wildcards where they cannot be
used, a bad ``limit``/``offset``/``fuzzymatching``/``includefield``.

Value forms accepted (PS3.18 §8.3.4.1, PS3.4 C.2.2.2): single values; ``*``/``?`` wildcards in
text values; UID lists separated by commas or by repeating the parameter; comma-separated lists of
code strings (``ModalitiesInStudy=CT,MR``: any of them); DA/TM/DT ranges ``A-B``, ``A-``, ``-B``;
an empty value asks for the attribute to be returned without matching on it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import BaseTag, Tag

from dicomweb_gateway.attributes import default_return_keywords, level_of, tags
from dicomweb_gateway.backend import QueryLevel, SearchQuery
from dicomweb_gateway.errors import InvalidQuery
from dicomweb_gateway.uids import check_uid

__all__ = ["QidoRequest", "parse_attribute", "parse_search"]

_RESERVED = {"includefield", "fuzzymatching", "limit", "offset"}
_IGNORED = {"charset"}  # PS3.18 §8.3.3.1 response charset: we always answer UTF-8 JSON
_LEVEL_RANK = {QueryLevel.STUDY: 0, QueryLevel.SERIES: 1, QueryLevel.IMAGE: 2}
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_DA = r"\d{8}"
_TM = r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"
_DT = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?(?:[+-]\d{4})?"
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CS = re.compile(r"^[A-Z0-9 _*?]*$")


@dataclass(frozen=True)
class QidoRequest:
    """A validated search: the backend query, the paging and what the response must carry.

    Attributes
    ----------
    query
        For the backend.
    limit, offset
        Paging, ``limit`` already capped to the server maximum.
    return_tags
        Attributes each result must show (empty when absent), unless ``query.include_all``.
    """

    query: SearchQuery
    limit: int
    offset: int
    return_tags: tuple[BaseTag, ...]


def parse_attribute(name: str) -> tuple[BaseTag, str]:
    """A QIDO ``{attributeID}`` (keyword or 8-hex-digit tag) → ``(tag, keyword)``.

    Raises
    ------
    InvalidQuery
        Unknown keyword or tag, or a sequence path (``A.B``), which this gateway does not match on.
    """
    if "." in name:
        raise InvalidQuery(f"{name!r}: matching on sequence items (attribute paths) is not supported")
    if _HEX_TAG.match(name):
        tag = Tag(int(name, 16))
        keyword = keyword_for_tag(tag)
    else:
        value = tag_for_keyword(name)
        if value is None:
            raise InvalidQuery(f"{name!r} is neither a DICOM attribute keyword nor a tag (ggggeeee)")
        tag, keyword = Tag(value), name
    if not keyword:
        raise InvalidQuery(f"{name!r} is not a known DICOM attribute (private and unknown tags cannot be queried)")
    return tag, keyword


def parse_search(
    level: QueryLevel,
    params: Iterable[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    max_results: int = 1000,
) -> QidoRequest:
    """Validate QIDO-RS query parameters for a search at ``level`` (PS3.18 §8.3.4, §10.6.1).

    Parameters
    ----------
    level
        STUDY, SERIES or IMAGE, from the resource path.
    params
        The query string's ``(name, value)`` pairs, repeats included.
    study_uid, series_uid
        Scope from the path (already valid UIDs).
    max_results
        Server maximum; also the default ``limit``.

    Raises
    ------
    InvalidQuery
        Anything malformed (400).
    """
    matching = Dataset()
    uid_lists: dict[str, list[str]] = {}
    seen: set[str] = set()
    requested: list[str] = []
    include_all = False
    fuzzy = False
    limit = max_results
    offset = 0
    for name, value in params:
        key = name.lower()
        if key == "includefield":
            for field in filter(None, (v.strip() for v in value.split(","))):
                if field.lower() == "all":
                    include_all = True
                else:
                    requested.append(parse_attribute(field)[1])
        elif key == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise InvalidQuery(f"fuzzymatching must be true or false, not {value!r}")
            fuzzy = value.lower() == "true"
        elif key in ("limit", "offset"):
            number = _non_negative(key, value)
            if key == "limit":
                if number == 0:
                    raise InvalidQuery("limit must be at least 1")
                limit = min(number, max_results)
            else:
                offset = number
        elif key in _IGNORED:
            continue
        else:
            tag, keyword = parse_attribute(name)
            _check_level(keyword, level)
            if value == "":
                requested.append(keyword)
                continue
            vr = dictionary_VR(tag)
            if vr == "UI":
                items = [v.strip() for v in value.split(",")]
                if "" in items:
                    raise InvalidQuery(f"{keyword}: empty item in the UID list {value!r}")
                uid_lists.setdefault(keyword, []).extend(check_uid(v, keyword) for v in items)
                continue
            if keyword in seen:
                raise InvalidQuery(f"{keyword} is given more than once")
            seen.add(keyword)
            setattr(matching, keyword, _checked_value(keyword, vr, value))
    for keyword, values in uid_lists.items():
        setattr(matching, keyword, values[0] if len(values) == 1 else values)
    if study_uid is not None:
        matching.StudyInstanceUID = study_uid
    if series_uid is not None:
        matching.SeriesInstanceUID = series_uid
    defaults = default_return_keywords(level, study_scoped=study_uid is not None, series_scoped=series_uid is not None)
    matched = [elem.keyword for elem in matching if elem.keyword]
    return_keywords = tuple(dict.fromkeys([*defaults, *matched, *requested]))
    return_tags = tags(return_keywords)
    query = SearchQuery(
        level=level,
        matching=matching,
        return_keys=return_tags,
        study_uid=study_uid,
        series_uid=series_uid,
        include_all=include_all,
        fuzzy=fuzzy,
    )
    return QidoRequest(query=query, limit=limit, offset=offset, return_tags=return_tags)


def _non_negative(key: str, value: str) -> int:
    if not value.isdigit():
        raise InvalidQuery(f"{key} must be a non-negative integer, not {value!r}")
    return int(value)


def _check_level(keyword: str, level: QueryLevel) -> None:
    attr_level = level_of(keyword)
    if _LEVEL_RANK[attr_level] > _LEVEL_RANK[level]:
        hint = " (use ModalitiesInStudy)" if keyword == "Modality" else ""
        raise InvalidQuery(
            f"{keyword} is a {attr_level.value}-level attribute and cannot be matched in a "
            f"{level.value}-level search{hint}"
        )


def _checked_value(keyword: str, vr: str, value: str) -> str | list[str]:
    """Validate one matching value for its VR; return it as the C-FIND identifier holds it."""
    if vr == "SQ":
        raise InvalidQuery(f"{keyword}: sequence matching is not supported")
    if vr == "DA":
        _check_range(keyword, value, _DA, _check_date)
    elif vr == "TM":
        _check_range(keyword, value, _TM, _check_time)
    elif vr == "DT":
        _check_range(keyword, value, _DT, _check_datetime)
    elif vr in ("IS", "SS", "US", "SL", "UL", "SV", "UV"):
        if not _INTEGER.match(value):
            raise InvalidQuery(f"{keyword} must be an integer, not {value!r}")
    elif vr in ("DS", "FL", "FD"):
        if not _DECIMAL.match(value):
            raise InvalidQuery(f"{keyword} must be a number, not {value!r}")
    elif vr == "CS":
        items = [v.strip() for v in value.split(",")]
        for item in items:
            if not item or not _CS.match(item):
                raise InvalidQuery(f"{keyword}: {item!r} is not a code string (A-Z, 0-9, space, _)")
        return items if len(items) > 1 else items[0]
    elif vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        raise InvalidQuery(f"{keyword}: binary attributes cannot be matched")
    if "\\" in value:
        raise InvalidQuery(f"{keyword}: backslash is not allowed in a matching value")
    return value


def _check_range(keyword: str, value: str, pattern: str, check: Callable[[str], None]) -> None:
    """A single value or a range ``A-B`` / ``A-`` / ``-B`` of ``pattern`` values (PS3.4 C.2.2.2.5)."""
    if "*" in value or "?" in value:
        raise InvalidQuery(f"{keyword}: wildcards are not allowed in dates and times (use a range A-B)")
    m = re.fullmatch(f"(?P<low>{pattern})?(?:(?P<sep>-)(?P<high>{pattern})?)?", value)
    if m is None or not (m["low"] or m["high"]):
        raise InvalidQuery(f"{keyword}: {value!r} is neither a value nor a range of its VR")
    for bound in (m["low"], m["high"]):
        if bound:
            try:
                check(bound)
            except ValueError:
                raise InvalidQuery(f"{keyword}: {bound!r} is not a valid value for its VR (in {value!r})") from None
    if m["low"] and m["high"] and m["low"][:14] > m["high"][:14]:
        raise InvalidQuery(f"{keyword}: range {value!r} ends before it starts")


def _check_date(value: str) -> None:
    if not re.fullmatch(r"\d{8}", value):
        raise ValueError(value)
    dt.datetime.strptime(value, "%Y%m%d")


def _check_time(value: str) -> None:
    m = _TIME.match(value)
    if m is None or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59 or int(m.group(3) or 0) > 60:
        raise ValueError(value)


def _check_datetime(value: str) -> None:
    if len(value) >= 8 and value[:8].isdigit():
        _check_date(value[:8])
    if len(value) >= 10 and value[8:10].isdigit():
        _check_time(value[8:].split("+")[0].split("-")[0])
