"""HL7 timestamps (v2 DTM, v3 TS) to aware UTC datetimes.

Both have the form ``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`` (HL7 v2.5 §2.A.22, CDA R2 TS). A
value without an offset is local time *of the sender*; the caller says which zone that is (France
metropolitan by default, but overseas sites send UTC-3 to UTC+4 — the offset matters for the DMP,
which wants UTC). Missing trailing parts are the start of the period (``2021`` = 2021-01-01 00:00).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

__all__ = ["PARIS", "parse_timestamp"]

PARIS = ZoneInfo("Europe/Paris")
"""Default zone of a timestamp without offset (metropolitan France)."""

_TS = re.compile(
    r"(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?(?P<hour>\d{2})?(?P<minute>\d{2})?(?P<second>\d{2})?"
    r"(?:\.(?P<fraction>\d{1,6})\d*)?(?P<offset>[+-]\d{4})?"
)


def parse_timestamp(value: str, default_zone: tzinfo = PARIS) -> datetime:
    """Parse an HL7 v2 DTM / v3 TS value into an aware datetime in UTC.

    Parameters
    ----------
    value
        ``20210108111700+0100``, ``20210108``, ``20240102101500.123``…
    default_zone
        Zone of a value that carries no offset.

    Returns
    -------
    datetime
        The instant, ``tzinfo=UTC``.

    Raises
    ------
    ValueError
        The value does not have the TS form or names an impossible date (month 13, 30 February…).
    """
    match = _TS.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an HL7 timestamp (YYYYMMDDHHMMSS[.S][+ZZZZ]): {value!r}")
    parts = match.groupdict()
    if parts["day"] is None and parts["hour"] is not None:  # regex allows no gap, but be explicit
        raise ValueError(f"not an HL7 timestamp: {value!r}")
    fraction = parts["fraction"] or ""
    local = datetime(
        int(parts["year"]),
        int(parts["month"] or 1),
        int(parts["day"] or 1),
        int(parts["hour"] or 0),
        int(parts["minute"] or 0),
        int(parts["second"] or 0),
        int(fraction.ljust(6, "0")) if fraction else 0,
    )
    offset = parts["offset"]
    if offset is None:
        return local.replace(tzinfo=default_zone).astimezone(UTC)
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 14 or minutes > 59:
        raise ValueError(f"impossible UTC offset {offset} in {value!r}")
    zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return local.replace(tzinfo=zone).astimezone(UTC)
