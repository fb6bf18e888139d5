"""Content negotiation: the ``Accept`` header (RFC 9110 §12.5.1) and PS3.18 §8.7 media types.

Rules for DICOM instances (``application/dicom``), DESIGN F7:

* Each acceptable range gives a transfer syntax: its ``transfer-syntax`` parameter, ``*`` for
  "as stored", or, when absent, the PS3.18 default **Explicit VR Little Endian** (also for data
  stored compressed: PS3.18 Table 8.7.3-2 makes it the default whatever the storage; a client
  that wants the stored compressed bytes asks for ``transfer-syntax=*``).
* Per instance, the highest-q syntax that can be delivered without loss wins
  (:func:`dicomweb_gateway.syntaxes.deliverable_syntaxes`); among equal q, the one that costs
  least: as stored, then native, then header order. ``q=0`` refuses a syntax outright.
* Nothing deliverable → 406 listing what is; a malformed header or transfer-syntax UID → 400.

RFC 9110 list leniencies: empty elements (the national validator ends its list with a comma),
parameters after ``q`` (its ``;boundary=**``), quoted or token parameter values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dicomweb_gateway.errors import InvalidQuery, NotAcceptable
from dicomweb_gateway.syntaxes import DEFAULT_TRANSFER_SYNTAX, frame_media_type, is_native
from dicomweb_gateway.uids import is_valid_uid

__all__ = [
    "DicomRepresentation",
    "FrameRepresentation",
    "MediaRange",
    "choose_media_type",
    "negotiate_dicom",
    "negotiate_frames",
    "parse_accept",
]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_RANGE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAM = re.compile(rf"\s*;\s*(?:({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED}))?\s*")
_QVALUE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


@dataclass(frozen=True)
class MediaRange:
    """One element of ``Accept``: ``type/subtype``, parameters (names lower-case) and weight."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()
    q: float = 1.0
    order: int = 0

    def param(self, name: str) -> str | None:
        """Value of parameter ``name`` (case-insensitive name), or ``None``."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def matches(self, media_type: str) -> bool:
        """Whether this range covers ``media_type`` (``type/subtype``, no parameters)."""
        mtype, _, msub = media_type.lower().partition("/")
        return self.type == "*" or (self.type == mtype and self.subtype in ("*", msub))

    @property
    def specificity(self) -> int:
        """2 for ``type/subtype``, 1 for ``type/*``, 0 for ``*/*``."""
        return 0 if self.type == "*" else 1 if self.subtype == "*" else 2


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse an ``Accept`` header value (RFC 9110 §12.5.1).

    Parameters
    ----------
    header
        The raw value; ``None`` or blank means ``*/*``.

    Returns
    -------
    list of MediaRange
        In header order (``order`` numbers them).

    Raises
    ------
    InvalidQuery
        The value is not a list of media ranges (400).
    """
    if header is None or not header.strip():
        return [MediaRange("*", "*")]
    ranges: list[MediaRange] = []
    pos, n = 0, len(header)
    while pos < n:
        if header[pos] in ", \t":
            pos += 1  # empty list elements are allowed (RFC 9110 §5.6.1.2)
            continue
        m = _RANGE.match(header, pos)
        if m is None:
            raise InvalidQuery(f"malformed Accept header near {header[pos : pos + 40]!r}")
        mtype, msub = m.group(1).lower(), m.group(2).lower()
        if mtype == "*" and msub != "*":
            raise InvalidQuery(f"malformed media range {mtype}/{msub} in Accept")
        pos = m.end()
        params: list[tuple[str, str]] = []
        q = 1.0
        while pos < n and header[pos] != ",":
            p = _PARAM.match(header, pos)
            if p is None or p.end() == pos:
                raise InvalidQuery(f"malformed Accept parameter near {header[pos : pos + 40]!r}")
            pos = p.end()
            if p.group(1) is None:
                continue
            name, value = p.group(1).lower(), _unquote(p.group(2))
            if name == "q":
                if not _QVALUE.match(value):
                    raise InvalidQuery(f"invalid q-value {value!r} in Accept")
                q = float(value)
            else:
                params.append((name, value))
        ranges.append(MediaRange(mtype, msub, tuple(params), q, len(ranges)))
    if not ranges:
        return [MediaRange("*", "*")]
    return ranges


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def choose_media_type(accept: str | None, offered: Sequence[str]) -> str:
    """The offered media type the client prefers (RFC 9110 §12.5.1), server order breaking ties.

    Each offered type takes the q of the most specific range that matches it.

    Raises
    ------
    NotAcceptable
        No offered type has q > 0.
    """
    ranges = parse_accept(accept)
    best: tuple[float, int] | None = None
    chosen = ""
    for index, media_type in enumerate(offered):
        matching = [r for r in ranges if r.matches(media_type)]
        if not matching:
            continue
        q = max(matching, key=lambda r: (r.specificity, -r.order)).q
        if q > 0 and (best is None or q > best[0]):
            best, chosen = (q, index), media_type
    if best is None:
        raise NotAcceptable(f"none of {', '.join(offered)} is acceptable", offered)
    return chosen


# --------------------------------------------------------------------------- application/dicom


@dataclass(frozen=True)
class DicomRepresentation:
    """The client's acceptable ways of receiving DICOM instances.

    Attributes
    ----------
    choices
        ``(transfer syntax or "*", q)``, best first.
    refused
        Syntaxes given ``q=0`` explicitly.
    multipart
        ``multipart/related`` (else a single ``application/dicom`` body, instance level only).
    """

    choices: tuple[tuple[str, float], ...]
    refused: frozenset[str] = frozenset()
    multipart: bool = True

    def select(self, stored: str, deliverable: Sequence[str]) -> str | None:
        """The syntax to send an instance stored as ``stored`` in, or ``None`` if none fits."""
        ranked: list[tuple[float, int, int, str]] = []
        for order, (wanted, q) in enumerate(self.choices):
            ts = stored if wanted == "*" else wanted
            if ts in deliverable and ts not in self.refused:
                cost = 0 if ts == stored else 1 if is_native(ts) else 2
                ranked.append((-q, cost, order, ts))
        return min(ranked)[3] if ranked else None


def _is_dicom_multipart(r: MediaRange) -> bool:
    if r.type == "*" or (r.type == "multipart" and r.subtype in ("*", "related")):
        part_type = (r.param("type") or "application/dicom").lower()
        return part_type in ("application/dicom", "application/*", "*/*")
    return False


def negotiate_dicom(accept: str | None, *, single_part_ok: bool = False) -> DicomRepresentation:
    """Read the client's acceptable DICOM representations from ``Accept`` (PS3.18 §8.7.3).

    Parameters
    ----------
    accept
        The raw header.
    single_part_ok
        Whether a bare ``application/dicom`` body may be returned (a one-instance retrieve).

    Raises
    ------
    InvalidQuery
        Malformed header or ``transfer-syntax`` value (400).
    NotAcceptable
        No range asks for DICOM instances at all (406).
    """
    ranges = parse_accept(accept)
    multipart = [r for r in ranges if _is_dicom_multipart(r)]
    single = [r for r in ranges if r.type == "application" and r.subtype == "dicom"] if single_part_ok else []
    use_multipart = bool(multipart) and (not single or max(r.q for r in multipart) >= max(r.q for r in single))
    chosen = multipart if use_multipart else single
    choices: list[tuple[str, float]] = []
    refused: set[str] = set()
    for r in sorted(chosen, key=lambda r: (-r.q, r.order)):
        ts = r.param("transfer-syntax")
        if ts is None:
            ts = DEFAULT_TRANSFER_SYNTAX
        elif ts != "*" and not is_valid_uid(ts):
            raise InvalidQuery(f"transfer-syntax {ts!r} in Accept is not a valid UID")
        if r.q == 0:
            refused.add(ts)
        else:
            choices.append((ts, r.q))
    if not choices:
        offered = 'multipart/related; type="application/dicom"'
        raise NotAcceptable(f"Accept asks for no DICOM instance representation; use {offered}", [offered])
    return DicomRepresentation(tuple(choices), frozenset(refused), use_multipart)


# -------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameRepresentation:
    """How to send frames / bulk pixel data: part media type and transfer syntax."""

    media_type: str
    transfer_syntax: str

    @property
    def native(self) -> bool:
        """Whether frames are sent uncompressed (little endian, as PS3.18 §8.7.3.3.2 says)."""
        return self.media_type == "application/octet-stream"


def negotiate_frames(accept: str | None, stored: str) -> FrameRepresentation:
    """Choose the frame representation (PS3.18 §8.7.3.3.2, Table 8.7.3-4).

    Uncompressed ``application/octet-stream`` is always possible (frames are decoded if needed);
    the stored compressed bitstream (``image/jls``, ``image/jp2``…) when asked for by its media
    type or with ``transfer-syntax=*``. ``*/*`` gets uncompressed frames.
    """
    native = FrameRepresentation("application/octet-stream", DEFAULT_TRANSFER_SYNTAX)
    compressed_type = frame_media_type(stored)
    stored_rep = FrameRepresentation(compressed_type, stored) if compressed_type else native
    best: tuple[float, int, FrameRepresentation] | None = None
    for r in parse_accept(accept):
        candidate: FrameRepresentation | None = None
        if r.type == "*" or (r.type == "multipart" and r.subtype in ("*", "related")):
            part_type = (r.param("type") or "application/octet-stream").lower()
            ts = r.param("transfer-syntax")
            if part_type in ("application/octet-stream", "*/*", "application/*"):
                candidate = stored_rep if ts == "*" else native if ts in (None, DEFAULT_TRANSFER_SYNTAX) else None
            elif compressed_type and part_type == compressed_type and ts in (None, "*", stored):
                candidate = stored_rep
        if candidate is not None and r.q > 0 and (best is None or (r.q, -r.order) > (best[0], -best[1])):
            best = (r.q, r.order, candidate)
    if best is None:
        offered = ['multipart/related; type="application/octet-stream"']
        if compressed_type:
            offered.append(f'multipart/related; type="{compressed_type}"; transfer-syntax={stored}')
        raise NotAcceptable("no acceptable representation of the frames", offered)
    return best[2]
