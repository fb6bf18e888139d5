"""Stored-query parameter values (ITI TF-2a §3.18.4.1.2.3.5): quoted strings, numbers, lists.

A slot value is ``'text'`` (quotes doubled inside), a bare number (times), or a parenthesised,
comma-separated list of those. Several values of one slot are OR-ed; several slots of the same
name (only meaningful for eventCodeList and confidentialityCode) are AND-ed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lxml import etree

from registry.errors import ErrorCode, RegistryError, XdsFailure
from registry.store.crud import CodeFilter, ReferenceFilter
from registry.xds.ns import RIM

__all__ = ["QueryParams", "code_filters", "reference_filters", "time_bound"]

_TIME = re.compile(r"^[0-9]{4}([0-9]{2}){0,5}$")
_TIME_PADDING = "0101000000"  # month 01, day 01, 00:00:00 for truncated precision


def _failure(code: ErrorCode, context: str, location: str) -> XdsFailure:
    return XdsFailure([RegistryError(code, context, location)])


def _scalar(token: str, name: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == "'":
        return token[1:-1].replace("''", "'")
    if token and "'" not in token and "," not in token:
        return token
    raise _failure(ErrorCode.REGISTRY_ERROR, f"{name}: value {token!r} is neither 'quoted' nor a number", name)


def _split_list(inner: str, name: str) -> list[str]:
    items, current, quoted, i = [], [], False, 0
    while i < len(inner):
        char = inner[i]
        if char == "'":
            if quoted and i + 1 < len(inner) and inner[i + 1] == "'":
                current.append("''")
                i += 2
                continue
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if quoted:
        raise _failure(ErrorCode.REGISTRY_ERROR, f"{name}: unbalanced quote in ({inner})", name)
    items.append("".join(current))
    return [_scalar(item, name) for item in items if item.strip()]


def _values(raw: str, name: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("(") and raw.endswith(")"):
        return _split_list(raw[1:-1], name)
    return [_scalar(raw, name)]


class QueryParams:
    """The slots of an ``rim:AdhocQuery``, parsed."""

    def __init__(self, groups: Mapping[str, list[list[str]]]) -> None:
        self._groups = groups

    @classmethod
    def from_query(cls, adhoc_query: etree._Element) -> QueryParams:
        """Read every ``rim:Slot`` of the query."""
        groups: dict[str, list[list[str]]] = {}
        for slot in adhoc_query.findall(f"{{{RIM}}}Slot"):
            name = slot.get("name", "")
            values: list[str] = []
            for value in slot.findall(f"{{{RIM}}}ValueList/{{{RIM}}}Value"):
                values.extend(_values(value.text or "", name))
            groups.setdefault(name, []).append(values)
        return cls(groups)

    @property
    def names(self) -> set[str]:
        """Parameter names present."""
        return set(self._groups)

    def single(self, name: str, *, required: bool = False) -> str | None:
        """A parameter that takes exactly one value.

        Raises
        ------
        XdsFailure
            ``XDSStoredQueryMissingParam`` when required and absent, ``XDSStoredQueryParamNumber``
            when given several values or slots.
        """
        groups = self._groups.get(name)
        if not groups:
            if required:
                raise _failure(ErrorCode.STORED_QUERY_MISSING_PARAM, f"required parameter {name} is missing", name)
            return None
        values = [v for group in groups for v in group]
        if len(groups) != 1 or len(values) != 1:
            raise _failure(ErrorCode.STORED_QUERY_PARAM_NUMBER, f"{name} takes one value, got {len(values)}", name)
        return values[0]

    def any_of(self, name: str) -> list[str]:
        """A list parameter (OR); several slots of that name are refused."""
        groups = self._groups.get(name, [])
        if len(groups) > 1:
            raise _failure(ErrorCode.STORED_QUERY_PARAM_NUMBER, f"{name} may appear in one slot only", name)
        return list(groups[0]) if groups else []

    def all_of_any(self, name: str) -> list[list[str]]:
        """An AND-of-OR parameter (eventCodeList, confidentialityCode)."""
        return [list(group) for group in self._groups.get(name, []) if group]


def code_filters(values: list[str]) -> list[CodeFilter]:
    """``code^^scheme`` values (ITI TF-2a §3.18.4.1.2.3.7, HL7 CE with empty display)."""
    filters = []
    for value in values:
        parts = value.split("^")
        scheme = parts[2] if len(parts) >= 3 and parts[2] else None
        filters.append(CodeFilter(parts[0], scheme))
    return filters


def reference_filters(values: list[str]) -> list[ReferenceFilter]:
    """CXi query values: the id, and the type (CX.5) and authority (CX.4) when given.

    Matching on the components rather than the whole string lets a consumer find a study's KOS by
    ``<Study UID>^^^^urn:ihe:iti:xds:2016:studyInstanceUID`` whatever assigning authority the
    publisher put in CX.4, and by the accession number likewise.
    """
    filters = []
    for value in values:
        parts = value.split("^")
        authority_parts = parts[3].split("&") if len(parts) > 3 else []
        authority = authority_parts[1] if len(authority_parts) > 1 and authority_parts[1] else None
        id_type = parts[4] if len(parts) > 4 and parts[4] else None
        filters.append(ReferenceFilter(parts[0], id_type, authority))
    return filters


def time_bound(value: str | None, name: str) -> str | None:
    """A ``YYYY[MM[DD[hh[mm[ss]]]]]`` bound padded to 14 digits for comparison with stored UTC times."""
    if value is None:
        return None
    if not _TIME.match(value):
        raise _failure(ErrorCode.REGISTRY_ERROR, f"{name} {value!r} is not YYYY[MM[DD[hh[mm[ss]]]]]", name)
    return value + _TIME_PADDING[len(value) - 4 :]
