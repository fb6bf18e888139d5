"""General acknowledgments (ACK) in the original mode (HL7 v2.5 §2.9.2, §2.14.1).

An ACK answers in the message's own version, delimiters and character set:

- MSH: sender and receiver swapped (MSH-3/4 ← MSH-5/6 and back), MSH-9 ``ACK^<trigger>^ACK``, a new
  MSH-10, MSH-11/12/18 echoed;
- MSA: MSA-1 AA/AE/AR, MSA-2 = the message's MSH-10, MSA-3 a short text (until v2.6; withdrawn in 2.7);
- ERR (only for AE/AR): from v2.5 on, ERR-2 the location (ERL), ERR-3 the HL7 table 0357 code
  (CWE ``code^text^HL70357``), ERR-4 severity ``E``, ERR-8 the human text; before v2.5, ERR-1
  (ELD ``segment^sequence^field^code&text&HL70357``).

Echoed MSH fields are copied raw (already escaped); everything the node writes itself is escaped
with the message's own escape character (§2.7).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from drimbox.hl7.errors import AckCode, ErrorCode, ErrorLocation, Hl7Error
from drimbox.hl7.header import MessageHeader

__all__ = ["build_ack", "encode_ack"]


def _escape(text: str, header: MessageHeader) -> str:
    """Escape free text for a TX/ST field with the message's delimiters (HL7 v2.5 §2.7.1)."""
    esc = header.escape_character
    replacements = [
        (esc, f"{esc}E{esc}"),
        (header.field_separator, f"{esc}F{esc}"),
        (header.component_separator, f"{esc}S{esc}"),
        (header.repetition_separator, f"{esc}R{esc}"),
        (header.subcomponent_separator, f"{esc}T{esc}"),
    ]
    # One pass per character, so that an escape just written is never escaped again.
    mapping = dict(replacements)
    flat = " ".join(text.split())  # CR/LF would end the segment
    return "".join(mapping.get(c, c) for c in flat)


def _location(location: ErrorLocation | None, header: MessageHeader) -> str:
    if location is None:
        return ""
    parts = [
        location.segment,
        str(location.sequence),
        "" if location.field is None else str(location.field),
        "" if location.field is None else str(location.repetition or 1),
        "" if location.component is None else str(location.component),
        "" if location.subcomponent is None else str(location.subcomponent),
    ]
    return header.component_separator.join(parts).rstrip(header.component_separator)


def _err_segment(error: Hl7Error, header: MessageHeader) -> str:
    fs, cs, ss = header.field_separator, header.component_separator, header.subcomponent_separator
    code: ErrorCode = error.code
    text = _escape(error.message, header)
    meaning = _escape(code.meaning, header)
    if header.version_tuple < (2, 5):
        # ERR-1 ELD (HL7 v2.3/2.4): segment^sequence^field^code&text&HL70357
        where = error.location or ErrorLocation("MSH")
        field = "" if where.field is None else str(where.field)
        eld = cs.join([where.segment, str(where.sequence), field, ss.join([str(int(code)), meaning, "HL70357"])])
        return fs.join(["ERR", eld])
    fields = [
        "ERR",
        "",  # ERR-1 ELD: backward compatibility only
        _location(error.location, header),  # ERR-2 Error Location
        cs.join([str(int(code)), meaning, "HL70357"]),  # ERR-3 HL7 Error Code
        "E",  # ERR-4 Severity: error
        "",  # ERR-5 Application Error Code
        "",  # ERR-6 Application Error Parameter
        "",  # ERR-7 Diagnostic Information
        text,  # ERR-8 User Message
    ]
    return fs.join(fields)


def build_ack(
    header: MessageHeader,
    code: AckCode,
    error: Hl7Error | None = None,
    *,
    application: str = "DRIMBOX",
    facility: str = "",
    now: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """Build the ACK of one message.

    Parameters
    ----------
    header
        The MSH of the message acknowledged (:data:`~drimbox.hl7.header.DEFAULT_HEADER` when it
        could not be read).
    code
        MSA-1: ``AA`` accepted, ``AE`` error, ``AR`` rejected.
    error
        The reason of an AE/AR; gives ERR (and MSA-3). ``None`` for AA.
    application, facility
        MSH-3/MSH-4 of the ACK when the message's MSH-5/MSH-6 are empty.
    now
        MSH-7 (aware datetime; local time with offset by default).
    control_id
        MSH-10 of the ACK (a fresh 20-character id by default).

    Returns
    -------
    str
        The ACK segments, each ended by CR.
    """
    fs = header.field_separator
    cs = header.component_separator
    stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S%z")
    trigger = header.trigger_event
    version = header.version_tuple
    message_type = (
        cs.join(["ACK", trigger, "ACK"])
        if trigger and version >= (2, 4)
        else cs.join(["ACK", trigger] if trigger else ["ACK"])
    )
    msh = [
        "MSH",
        header.encoding_characters,
        header.field(5) or _escape(application, header),  # MSH-3 ← their receiving application
        header.field(6) or _escape(facility, header),  # MSH-4 ← their receiving facility
        header.field(3),  # MSH-5 ← their sending application
        header.field(4),  # MSH-6 ← their sending facility
        stamp,  # MSH-7
        "",  # MSH-8 security
        message_type,  # MSH-9
        control_id or uuid.uuid4().hex[:20].upper(),  # MSH-10 (ST, 20 characters in v2.5)
        header.field(11) or "P",  # MSH-11
        header.field(12) or "2.5",  # MSH-12
    ]
    if header.field(18):
        msh += [""] * 5 + [header.field(18)]  # MSH-13…17 empty, MSH-18 character set
    segments = [fs.join(msh)]
    msa = ["MSA", code.value, header.control_id]
    if error is not None and version < (2, 7):
        msa.append(_escape(error.message, header)[:80])  # MSA-3 (ST 80), withdrawn in v2.7
    segments.append(fs.join(msa))
    if error is not None and code is not AckCode.ACCEPT:
        segments.append(_err_segment(error, header))
    return "\r".join(segments) + "\r"


def encode_ack(ack: str, header: MessageHeader) -> bytes:
    """The ACK's bytes in the message's character set (ASCII when MSH-18 is empty, HL7's default)."""
    return ack.encode(header.codec or "ascii", errors="replace")
