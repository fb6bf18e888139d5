"""UID syntax (PS3.5 §9.1): digits and dots, no leading zero in a component, at most 64 characters."""

from __future__ import annotations

import re

__all__ = ["is_uid"]

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


def is_uid(value: object) -> bool:
    """Whether ``value`` is a syntactically valid UID (safe to use as a file or directory name)."""
    return isinstance(value, str) and len(value) <= 64 and _UID.fullmatch(value) is not None
