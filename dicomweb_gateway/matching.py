"""C-FIND attribute matching (PS3.4 C.2.2.2) for backends that search their own index.

A PACS backend forwards the query and lets the PACS match; the node cache (and any other local
store) matches with :func:`matches`:

* single value matching, case-sensitive, except person names (PN), which match
  case-insensitively as most archives do (Orthanc, dcm4chee);
* wildcards ``*`` and ``?`` in text values;
* UID list matching; any-of matching for a multi-valued key (``ModalitiesInStudy=CT\\MR``);
* range matching for DA, TM and DT (bounds compared at the precision they are given);
* fuzzy semantic matching of PN when asked: case- and accent-insensitive, each word of the key a
  prefix of a word of the name (``lef`` matches ``LEFÈVRE^Zoé``).

A multi-valued attribute matches when any of its values does; an empty attribute matches only
universal keys (which never reach here: empty values are return keys, not matching keys).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

__all__ = ["element_values", "matches"]

_WORDS = re.compile(r"[\s^=,.\-]+")


def matches(query: Dataset, candidate: Dataset, *, fuzzy: bool = False) -> bool:
    """Whether ``candidate`` satisfies every matching key of ``query`` (PS3.4 C.2.2.2).

    Parameters
    ----------
    query
        Matching keys with non-empty values.
    candidate
        The record to test (a study, series or instance's attributes).
    fuzzy
        Fuzzy semantic matching of person names.
    """
    for elem in query:
        wanted = element_values(elem)
        if not wanted or elem.VR == "SQ":
            continue
        have = element_values(candidate.get(elem.tag))
        if not have or not any(_match_one(elem.VR, w, h, fuzzy) for w in wanted for h in have):
            return False
    return True


def element_values(elem: DataElement | None) -> list[str]:
    """The values of ``elem`` as strings (PN as ``Family^Given…``), ``[]`` when empty or absent."""
    if elem is None or elem.value is None or elem.value == "":
        return []
    if isinstance(elem.value, MultiValue | list | tuple):
        return [str(v) for v in elem.value if v is not None and str(v) != ""]
    return [str(elem.value)]


def _match_one(vr: str, wanted: str, have: str, fuzzy: bool) -> bool:
    if vr == "UI":
        return wanted == have
    if vr in ("DA", "TM", "DT") and "-" in wanted and not _is_dt_offset_only(vr, wanted):
        return _in_range(vr, wanted, have)
    if vr in ("DA", "TM", "DT"):
        return _strip(vr, have).startswith(_strip(vr, wanted)) if vr != "DA" else have == wanted
    if vr == "PN":
        if fuzzy:
            return _fuzzy_name(wanted, have)
        return _pattern(wanted, True).fullmatch(have) is not None
    if "*" in wanted or "?" in wanted:
        return _pattern(wanted, False).fullmatch(have) is not None
    return wanted == have


def _is_dt_offset_only(vr: str, value: str) -> bool:
    # "20250101120000-0500" is one DT with a UTC offset, not a range.
    return vr == "DT" and re.fullmatch(r"\d{4,}(\.\d+)?-\d{4}", value) is not None


def _strip(vr: str, value: str) -> str:
    if vr == "DT":
        return re.split(r"[+-]", value)[0] if not value.startswith("-") else value
    return value


def _in_range(vr: str, wanted: str, have: str) -> bool:
    low, _, high = wanted.partition("-") if vr != "DT" else _dt_range(wanted)
    value = _strip(vr, have)
    low, high = _strip(vr, low), _strip(vr, high)
    if low and value[: len(low)] < low:
        return False
    return not (high and value[: len(high)] > high)


def _dt_range(value: str) -> tuple[str, str, str]:
    m = re.fullmatch(r"(\d[\d.]*(?:[+-]\d{4})?)?-(\d[\d.]*(?:[+-]\d{4})?)?", value)
    if m is None:
        return value, "", ""
    return m.group(1) or "", "-", m.group(2) or ""


@lru_cache(maxsize=512)
def _pattern(wanted: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in wanted)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _fuzzy_name(wanted: str, have: str) -> bool:
    words = [w for w in _WORDS.split(_fold(wanted).replace("*", "").replace("?", "")) if w]
    names = [w for w in _WORDS.split(_fold(have)) if w]
    return all(any(name.startswith(word) for name in names) for word in words)
