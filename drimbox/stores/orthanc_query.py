"""Translate a gateway :class:`~dicomweb_gateway.SearchQuery` for Orthanc's QIDO-RS and ``/tools/find``.

Orthanc 1.10's DICOMweb plugin takes query values **as they appear in the URL**: it does not
percent-decode them (ORTHANC-NOTES pitfall 2), so ``PatientName=DUPONT%5EMARIE`` and ``%2A``
match nothing, and a value with a space or a non-ASCII letter (``ROUSSEAU^Cécile``) cannot be
written in a URL it would understand at all. So:

- values made only of URL-safe characters (letters, digits, ``. _ -`` and the DICOM wildcard and
  separator characters ``^ * ? ,``) are sent literally in the QIDO query string;
- otherwise the matching is done by ``POST /tools/find`` (JSON body: any UTF-8 value), which gives
  the matching UIDs, and QIDO is asked for those UIDs only, for the answer's attributes.

Unknown keys are ignored by Orthanc (pitfall 3); the gateway has validated every key already.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.tag import Tag

from dicomweb_gateway import QueryLevel, SearchQuery
from dicomweb_gateway.matching import element_values

__all__ = ["FIND_LEVEL", "UNIQUE_KEY", "QidoPlan", "find_body", "plan_qido", "uid_batches"]

_SAFE = re.compile(r"[A-Za-z0-9._\-^*?,]*")
FIND_LEVEL = {QueryLevel.STUDY: "Study", QueryLevel.SERIES: "Series", QueryLevel.IMAGE: "Instance"}
"""``/tools/find`` levels."""
UNIQUE_KEY = {QueryLevel.STUDY: "StudyInstanceUID", QueryLevel.SERIES: "SeriesInstanceUID",
              QueryLevel.IMAGE: "SOPInstanceUID"}  # fmt: skip
_RESOURCE = {QueryLevel.STUDY: "studies", QueryLevel.SERIES: "series", QueryLevel.IMAGE: "instances"}
_NOT_INCLUDED = frozenset({Tag("SpecificCharacterSet"), Tag("RetrieveURL")})
_UIDS_PER_REQUEST = 40  # 40 x 65 characters: URLs stay far below common 8 KiB limits


@dataclass(frozen=True)
class QidoPlan:
    """How to ask Orthanc.

    Attributes
    ----------
    path
        QIDO resource path below the plugin root (``/studies/{s}/series``…).
    params
        ``name=value`` pairs, already in the literal form Orthanc reads.
    needs_find
        Some matching value is not URL-safe: resolve the matches with ``/tools/find`` first.
    """

    path: str
    params: tuple[str, ...]
    needs_find: bool


def _path(query: SearchQuery) -> str:
    if query.level == QueryLevel.STUDY:
        return "/studies"
    if query.study_uid is None:
        return f"/{_RESOURCE[query.level]}"
    if query.level == QueryLevel.SERIES:
        return f"/studies/{query.study_uid}/series"
    if query.series_uid is None:
        return f"/studies/{query.study_uid}/instances"
    return f"/studies/{query.study_uid}/series/{query.series_uid}/instances"


def _include(query: SearchQuery) -> list[str]:
    fields = [f"{int(tag):08X}" for tag in dict.fromkeys(query.return_keys) if tag not in _NOT_INCLUDED]
    if query.include_all:
        fields.append("all")
    return [f"includefield={','.join(fields)}"] if fields else []


def plan_qido(query: SearchQuery) -> QidoPlan:
    """The QIDO request for ``query`` (path scope UIDs are not repeated as parameters)."""
    params: list[str] = []
    needs_find = False
    in_path = {"StudyInstanceUID": query.study_uid, "SeriesInstanceUID": query.series_uid}
    for elem in query.matching:
        values = element_values(elem)
        if not values or in_path.get(elem.keyword) is not None:
            continue
        value = ",".join(values)
        if _SAFE.fullmatch(value) is None:
            needs_find = True
            continue
        params.append(f"{elem.keyword}={value}")
    return QidoPlan(_path(query), tuple(params + _include(query)), needs_find)


def find_body(query: SearchQuery) -> dict[str, Any]:
    """The ``/tools/find`` request matching every key of ``query`` (lists backslash-separated)."""
    keys = {elem.keyword: "\\".join(values) for elem in query.matching if (values := element_values(elem))}
    return {"Level": FIND_LEVEL[query.level], "Query": keys, "Expand": True}


def uid_batches(query: SearchQuery, uids: list[str]) -> Iterator[QidoPlan]:
    """QIDO requests for the answers of already-matched ``uids`` (level's unique key lists)."""
    include = _include(query)
    path = f"/{_RESOURCE[query.level]}"
    for start in range(0, len(uids), _UIDS_PER_REQUEST):
        batch = ",".join(uids[start : start + _UIDS_PER_REQUEST])
        yield QidoPlan(path, (f"{UNIQUE_KEY[query.level]}={batch}", *include), False)
