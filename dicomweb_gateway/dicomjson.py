"""DICOM JSON (PS3.18 Annex F) through pydicom, with ``BulkDataURI`` for large binary values.

Element values are encoded by pydicom's ``DataElement.to_json_dict``; this module only walks the
data set to decide, per binary element, between inline and bulk data, and to name each bulk value
by its path so that ``/bulkdata/{path}`` can find it again. The walk reads raw elements, so a file
read with ``defer_size`` never loads the large values it only refers to.

Bulk data paths are ``gggg eeee`` tags and item indexes joined by ``/``: ``7FE00010`` for Pixel
Data, ``00540016/0/00181072``-style for a value inside a sequence item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag, Tag

from dicomweb_gateway.errors import NotFound

__all__ = ["BINARY_VRS", "dataset_json", "dumps", "element_at", "parse_bulk_path"]

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_UNDEFINED = 0xFFFFFFFF
_NEVER_BULK = 1 << 62

JsonDict = dict[str, Any]


def dataset_json(
    ds: Dataset,
    *,
    bulk_data_threshold: int,
    bulk_uri: Callable[[str], str] | None,
    _prefix: str = "",
) -> JsonDict:
    """The DICOM JSON model of ``ds`` (PS3.18 §F.2), large binary values as ``BulkDataURI``.

    Parameters
    ----------
    ds
        The data set (its File Meta Information is not part of it).
    bulk_data_threshold
        Binary values longer than this (or of undefined length, i.e. encapsulated pixel data)
        become bulk data references.
    bulk_uri
        Builds the URI from a bulk data path; ``None`` inlines every binary value.
    """
    out: JsonDict = {}
    for tag in sorted(ds.keys()):
        raw = ds.get_item(tag)
        key = f"{int(tag):08X}"
        vr = _vr_of(ds, tag, raw)
        path = f"{_prefix}{key}"
        if vr in BINARY_VRS and bulk_uri is not None and _length(raw) > bulk_data_threshold:
            out[key] = {"vr": vr, "BulkDataURI": bulk_uri(path)}
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            items = [
                dataset_json(item, bulk_data_threshold=bulk_data_threshold, bulk_uri=bulk_uri, _prefix=f"{path}/{i}/")
                for i, item in enumerate(elem.value)
            ]
            out[key] = {"vr": "SQ", "Value": items}  # as pydicom encodes it, empty or not
        else:
            out[key] = elem.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=_NEVER_BULK)
    return out


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON bytes (``application/dicom+json`` is UTF-8, PS3.18 §F.1)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _length(raw: DataElement | RawDataElement) -> int:
    if isinstance(raw, RawDataElement):
        return _UNDEFINED if raw.length == _UNDEFINED else raw.length
    if raw.is_undefined_length:
        return _UNDEFINED
    value = raw.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _vr_of(ds: Dataset, tag: BaseTag, raw: DataElement | RawDataElement) -> str:
    """The element's VR without loading a deferred value (implicit VR files carry none)."""
    if raw.VR:
        vr = str(raw.VR)
    else:
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    if vr == "OB or OW":
        if _length(raw) == _UNDEFINED:
            return "OB"
        bits = ds.get("BitsAllocated", 16)
        return "OW" if int(bits or 16) > 8 else "OB"
    if " or " in vr:
        # US or SS (LUT data…): never bulk-sized in practice; let pydicom decide when converting.
        return str(ds[tag].VR)
    return vr


def parse_bulk_path(path: str) -> tuple[tuple[BaseTag, int | None], ...]:
    """``7FE00010`` or ``00540016/0/00181072`` → ``((tag, item index or None), …)``.

    Raises
    ------
    NotFound
        The path is malformed (a URI we never issued).
    """
    parts = [p for p in path.strip("/").split("/") if p]
    steps: list[tuple[BaseTag, int | None]] = []
    try:
        while parts:
            tag = Tag(int(parts.pop(0), 16))
            index = int(parts.pop(0)) if parts else None
            steps.append((tag, index))
    except ValueError:
        raise NotFound(f"no bulk data at {path!r}") from None
    if not steps or steps[-1][1] is not None:
        raise NotFound(f"no bulk data at {path!r}")
    return tuple(steps)


def element_at(ds: Dataset, path: str) -> DataElement:
    """The element a bulk data path names.

    Raises
    ------
    NotFound
        No such element or item.
    """
    current = ds
    steps = parse_bulk_path(path)
    for tag, index in steps[:-1]:
        elem = current.get(tag)
        if elem is None or elem.VR != "SQ" or index is None or not 0 <= index < len(elem.value):
            raise NotFound(f"no bulk data at {path!r}")
        current = elem.value[index]
    elem = current.get(steps[-1][0])
    if elem is None:
        raise NotFound(f"no bulk data at {path!r}")
    return elem
