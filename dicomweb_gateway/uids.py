"""UID syntax (PS3.5 §9.1) and its checks on path and query values."""

from __future__ import annotations

import re

from dicomweb_gateway.errors import InvalidQuery

__all__ = ["check_uid", "is_valid_uid"]

# Components are digits without a leading zero (a lone "0" is fine), separated by single dots.
_UID = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a well-formed UID (PS3.5 §9.1: digits and dots, ≤ 64 characters,
    no empty component, no leading zero in a component)."""
    return len(value) <= 64 and _UID.match(value) is not None


def check_uid(value: str, what: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`InvalidQuery` naming ``what``."""
    if not is_valid_uid(value):
        reason = "longer than 64 characters" if len(value) > 64 else "not digits and dots without leading zeros"
        raise InvalidQuery(f"{what} {value[:80]!r} is not a valid UID ({reason}, PS3.5 9.1)")
    return value
