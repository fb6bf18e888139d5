"""The MSH segment, read from the raw bytes before anything else (HL7 v2.5 §2.14.9).

The header is read on its own, without the ``hl7`` library, for two reasons: the character set
(MSH-18) must be known before the rest of the message can be decoded, and an ACK must be possible
even for a message whose body is broken — the ACK echoes MSH-3…6, MSH-10, MSH-11, MSH-12 and uses
the message's own delimiters. Fields are kept *raw* (still escaped) so that echoing them is exact.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from drimbox.hl7.errors import ErrorCode, ErrorLocation, HeaderError

__all__ = ["DEFAULT_HEADER", "MessageHeader", "python_codec", "read_header", "salvage_header"]

# HL7 table 0211 (Alternate Character Sets) → Python codec. UTF-16/32 are left out on purpose:
# their bytes may contain 0x0B/0x1C, which MLLP cannot frame.
_CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
}
# Spellings seen in the field that are not table 0211 values but name a codec unambiguously.
_TOLERATED = frozenset({"utf-8", "iso8859-1", "iso8859-15", "cp1252"})


def python_codec(charset: str) -> str | None:
    """The Python codec for an MSH-18 value, ``None`` for an empty one (HL7's default, ASCII).

    Parameters
    ----------
    charset
        MSH-18 (first repetition), e.g. ``UNICODE UTF-8`` or ``8859/1``.

    Raises
    ------
    HeaderError
        Code 103 at MSH-18 when the value is neither in HL7 table 0211 nor a plain codec name
        (``UTF-8``, ``ISO-8859-1``…).
    """
    value = charset.strip()
    if not value:
        return None
    known = _CHARSETS.get(value.upper())
    if known is not None:
        return known
    try:
        name = codecs.lookup(value).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        name = ""
    if name in _TOLERATED:
        return name
    raise HeaderError(
        f"character set {value!r} is not supported (HL7 table 0211: UNICODE UTF-8, 8859/1, 8859/15…)",
        ErrorLocation("MSH", field=18),
        code=ErrorCode.TABLE_VALUE_NOT_FOUND,
    )


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The MSH segment of one message, fields raw (escaped), numbered as in the standard.

    ``fields[n]`` is MSH-n: ``fields[1]`` the field separator, ``fields[2]`` the encoding
    characters, ``fields[9]`` the message type…; absent fields read as ``""``.
    """

    fields: tuple[str, ...]
    codec: str | None = None
    """Python codec the message was decoded with (``None``: undeclared, UTF-8 or Latin-1)."""

    @property
    def field_separator(self) -> str:
        """MSH-1."""
        return self.fields[1]

    @property
    def encoding_characters(self) -> str:
        """MSH-2: component, repetition, escape and sub-component characters (and truncation in v2.7)."""
        return self.fields[2]

    @property
    def component_separator(self) -> str:
        return self.encoding_characters[0]

    @property
    def repetition_separator(self) -> str:
        return self.encoding_characters[1]

    @property
    def escape_character(self) -> str:
        return self.encoding_characters[2]

    @property
    def subcomponent_separator(self) -> str:
        return self.encoding_characters[3]

    def field(self, number: int) -> str:
        """MSH-``number``, raw; ``""`` when the segment is shorter."""
        return self.fields[number] if number < len(self.fields) else ""

    def component(self, number: int, component: int) -> str:
        """Component ``component`` (1-based) of the first repetition of MSH-``number``, raw."""
        first = self.field(number).split(self.repetition_separator)[0]
        parts = first.split(self.component_separator)
        return parts[component - 1] if component <= len(parts) else ""

    @property
    def message_code(self) -> str:
        """MSH-9.1 (``ORU``, ``MDM``…)."""
        return self.component(9, 1).strip().upper()

    @property
    def trigger_event(self) -> str:
        """MSH-9.2 (``R01``, ``T02``…)."""
        return self.component(9, 2).strip().upper()

    @property
    def message_type(self) -> str:
        """``code^trigger`` whatever the message's own component separator."""
        return f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code

    @property
    def control_id(self) -> str:
        """MSH-10, raw (echoed as is in MSA-2)."""
        return self.field(10)

    @property
    def processing_id(self) -> str:
        """MSH-11.1 (``P`` production, ``T`` training, ``D`` debugging)."""
        return self.component(11, 1)

    @property
    def version(self) -> str:
        """MSH-12.1 (``2.5``, ``2.6``…)."""
        return self.component(12, 1).strip()

    @property
    def character_set(self) -> str:
        """MSH-18, first repetition (the character set of the whole message)."""
        return self.field(18).split(self.repetition_separator)[0]

    @property
    def version_tuple(self) -> tuple[int, int]:
        """MSH-12.1 as ``(major, minor)``; ``(2, 5)`` when it does not read as a version."""
        parts = self.version.split(".")
        try:
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            return 2, 5


DEFAULT_HEADER = MessageHeader(fields=("MSH", "|", "^~\\&", "", "", "", "", "", "", "", "", "P", "2.5"))
"""Header used to answer a frame whose MSH cannot be read (MSA-2 is then empty)."""


def _check_delimiters(field_sep: str, encoding: str) -> None:
    where = ErrorLocation("MSH", field=2)
    if not (field_sep.isascii() and field_sep.isprintable()) or field_sep.isalnum() or field_sep.isspace():
        raise HeaderError(
            f"MSH-1 field separator {field_sep!r} is not a printable ASCII symbol",
            ErrorLocation("MSH", field=1),
            code=ErrorCode.DATA_TYPE_ERROR,
        )
    # v2.7 adds a fifth character (truncation, usually '#'); earlier versions have four.
    if len(encoding) not in (4, 5):
        raise HeaderError(
            f"MSH-2 must hold 4 encoding characters (component, repetition, escape, sub-component), found {encoding!r}",
            where,
            code=ErrorCode.DATA_TYPE_ERROR,
        )
    symbols = field_sep + encoding
    if len(set(symbols)) != len(symbols):
        raise HeaderError(
            f"MSH-1/MSH-2 delimiters must all differ, found {symbols!r}", where, code=ErrorCode.DATA_TYPE_ERROR
        )
    if any(not (c.isascii() and c.isprintable()) or c.isalnum() or c.isspace() for c in encoding):
        raise HeaderError(
            f"MSH-2 encoding characters must be printable ASCII symbols, found {encoding!r}",
            where,
            code=ErrorCode.DATA_TYPE_ERROR,
        )


def read_header(data: bytes) -> MessageHeader:
    """Read the MSH segment at the start of ``data`` (one HL7 message, CR or CRLF separated).

    Parameters
    ----------
    data
        The message bytes (MLLP payload).

    Returns
    -------
    MessageHeader
        The raw fields and the codec named by MSH-18.

    Raises
    ------
    HeaderError
        The message does not start with MSH (100), its delimiters are unusable (102), or MSH-18
        names an unsupported character set (103).
    """
    text = data.lstrip(b" \t\r\n")
    if not text.startswith(b"MSH") or len(text) < 8:
        raise HeaderError("the message does not start with an MSH segment", ErrorLocation("MSH"))
    end = len(text)
    for terminator in (b"\r", b"\n"):
        position = text.find(terminator)
        if position != -1:
            end = min(end, position)
    # MSH is read as Latin-1: every byte maps to one character, and the fields that matter here
    # (delimiters, ids, MSH-18) are ASCII in every character set HL7 allows for MSH.
    raw = text[:end]
    line = raw.decode("latin-1")
    if len(line) < 8:
        raise HeaderError("the MSH segment is too short to hold its delimiters", ErrorLocation("MSH"))
    field_sep = line[3]
    rest = line[4:].split(field_sep)
    _check_delimiters(field_sep, rest[0])
    codec = python_codec(MessageHeader(fields=("MSH", field_sep, *rest)).character_set)
    # Now that the character set is known, read the fields again in it, so that echoing MSH-3…6 in
    # the ACK gives back the sender's own characters.
    line = raw.decode(codec or "utf-8", errors="replace")
    return MessageHeader(fields=("MSH", field_sep, *line[4:].split(field_sep)), codec=codec)


def salvage_header(data: bytes) -> MessageHeader:
    """The best header for answering a message whose MSH :func:`read_header` refused.

    When the field separator is usable, the MSH fields are kept (so that the ACK still echoes
    MSH-10 and goes back to MSH-3/4) with the standard encoding characters ``^~\\&`` and no
    declared character set; otherwise :data:`DEFAULT_HEADER`.
    """
    text = data.lstrip(b" \t\r\n")
    if not text.startswith(b"MSH") or len(text) < 5:
        return DEFAULT_HEADER
    line = re.split(rb"[\r\n]", text, maxsplit=1)[0].decode("ascii", errors="replace")
    if len(line) < 5:
        return DEFAULT_HEADER
    field_sep = line[3]
    if not field_sep.isascii() or not field_sep.isprintable() or field_sep.isalnum() or field_sep.isspace():
        return DEFAULT_HEADER
    rest = line[4:].split(field_sep)
    fields = ["MSH", field_sep, DEFAULT_HEADER.encoding_characters, *rest[1:]]
    if len(fields) > 18:
        fields[18] = ""  # the character set may be the very thing refused
    return MessageHeader(fields=tuple(fields))
