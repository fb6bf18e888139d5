"""JSON form of an :class:`~drimbox.reports.ImagingReport`, as the outbox stores it.

The codec walks the dataclass fields by their type hints, so fields added to the shared domain
objects later are stored without change here. Reading is tolerant in the one direction that
matters across upgrades: a stored job written by an older node lacks new fields (their defaults
apply) and keeps fields a newer node no longer has (ignored).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from drimbox.reports import ImagingReport

__all__ = ["report_from_json", "report_to_json"]

T = TypeVar("T")


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(inner, value)
    if origin is tuple:
        args = typing.get_args(hint)
        return tuple(_decode(args[0], v) for v in value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _decode_dataclass(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if hint is bytes:
        return base64.b64decode(value)
    return value


def _decode_dataclass(cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k in names}
    return cls(**kwargs)


def report_to_json(report: ImagingReport) -> str:
    """The report as compact JSON (the CDA as base64)."""
    return json.dumps(_encode(report), separators=(",", ":"), ensure_ascii=False)


def report_from_json(text: str) -> ImagingReport:
    """The report stored by :func:`report_to_json`."""
    return _decode_dataclass(ImagingReport, json.loads(text))
