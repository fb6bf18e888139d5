"""One HL7 v2 message decoded and split by the ``hl7`` library, with forgiving accessors.

Tolerance, on purpose (HL7 v2.5 §2.6 and what RIS actually send):

- segment separators CR (the standard), CRLF or LF (files saved on Windows, as the ANS samples);
- the character set of MSH-18, or, when it is empty, UTF-8 with a Latin-1 fallback (French RIS
  often send Latin-1 without saying so);
- segments the node does not know (``PRT`` in a v2.5 message, ``Z`` segments) are kept and ignored;
- a missing trailing field, component or repetition reads as ``""``.

What is *not* tolerated: a frame with several messages, a segment without a valid id, bytes that
are not in the declared character set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import hl7  # type: ignore[import-untyped,unused-ignore]

from drimbox.hl7.errors import DataTypeError, ErrorLocation, SegmentSequenceError
from drimbox.hl7.header import MessageHeader, read_header

__all__ = ["ParsedMessage", "Segment", "decode_message"]

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")

Segment = Any
"""An ``hl7.Segment`` (the library is untyped); read it through :meth:`ParsedMessage.value`."""


def _decode(data: bytes, header: MessageHeader) -> str:
    if header.codec is not None:
        try:
            return data.decode(header.codec)
        except UnicodeDecodeError as exc:
            raise DataTypeError(
                f"the message is not valid {header.codec} as MSH-18 declares "
                f"({header.character_set!r}): byte {exc.start} is 0x{data[exc.start]:02X}",
                ErrorLocation("MSH", field=18),
            ) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A decoded message: its header and its segments, in order."""

    header: MessageHeader
    segments: tuple[Segment, ...]

    def segment_ids(self) -> tuple[str, ...]:
        """The id of every segment, in order (``MSH``, ``PID``, ``OBX``…)."""
        return tuple(str(segment[0][0]) for segment in self.segments)

    def all(self, segment_id: str) -> list[tuple[int, Segment]]:
        """Every segment with this id, with its occurrence number (1-based, per id)."""
        found = [segment for segment in self.segments if str(segment[0][0]) == segment_id]
        return list(enumerate(found, start=1))

    def first(self, segment_id: str) -> Segment | None:
        """The first segment with this id, or ``None``."""
        found = self.all(segment_id)
        return found[0][1] if found else None

    @staticmethod
    def value(segment: Segment, field: int, repetition: int = 1, component: int = 1, subcomponent: int = 1) -> str:
        """One value, unescaped; ``""`` when the segment is shorter than the path.

        Raises
        ------
        DataTypeError
            The value holds an escape sequence the library cannot undo (``\\.sp\\`` without a count…).
        """
        try:
            return str(segment.extract_field(1, field, repetition, component, subcomponent)).strip()
        except IndexError:
            return ""
        except ValueError as exc:
            location = ErrorLocation(str(segment[0][0]), field=field, repetition=repetition, component=component)
            raise DataTypeError(f"undecodable escape sequence: {exc}", location) from exc

    @staticmethod
    def repetition_count(segment: Segment, field: int) -> int:
        """How many repetitions field ``field`` has (0 when absent or empty)."""
        if field >= len(segment):
            return 0
        value = segment[field]
        if isinstance(value, hl7.Field) and value and isinstance(value[0], hl7.Repetition):
            return len(value)
        return 1 if str(value) else 0


def _split_segments(text: str) -> list[str]:
    # CRLF and LF are not HL7 but common (files edited on Windows, the ANS samples).
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in (raw.strip(" \t") for raw in lines) if line]


def decode_message(data: bytes) -> ParsedMessage:
    """Decode and split one message.

    Parameters
    ----------
    data
        The MLLP payload (bytes in the character set of MSH-18).

    Returns
    -------
    ParsedMessage
        Header and segments; no check beyond the structure is made here.

    Raises
    ------
    HeaderError
        The MSH cannot be read (see :func:`~drimbox.hl7.header.read_header`).
    DataTypeError
        The bytes are not in the declared character set, or the library cannot split the text.
    SegmentSequenceError
        A segment has no valid id, or the frame holds more than one message.
    """
    header = read_header(data)
    lines = _split_segments(_decode(data.lstrip(b" \t\r\n"), header))
    for number, line in enumerate(lines, start=1):
        segment_id = line[:3]
        if not _SEGMENT_ID.fullmatch(segment_id) or (len(line) > 3 and line[3] != header.field_separator):
            raise SegmentSequenceError(
                f"segment {number} has no valid segment id: {line[:12]!r}",
                ErrorLocation(segment_id if _SEGMENT_ID.fullmatch(segment_id) else "MSH"),
            )
        if number > 1 and segment_id == "MSH":
            raise SegmentSequenceError("one MLLP frame holds more than one message", ErrorLocation("MSH", 2))
    try:
        message = hl7.parse("\r".join(lines))
    # The library's failure modes are undocumented (ParseException, IndexError, AssertionError…);
    # whatever it raises on a structurally valid message becomes one data type error.
    except Exception as exc:  # noqa: BLE001
        raise DataTypeError(f"the message does not split as HL7 v2: {exc!r}") from exc
    return ParsedMessage(header=header, segments=tuple(message))
