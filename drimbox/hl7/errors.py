"""Why a message is refused, in HL7 terms: an error code of table 0357, a location, an ACK code.

Every refusal of :func:`drimbox.hl7.parse_report` is an :class:`Hl7Error`; the listener turns it into
an ACK whose MSA-1 is :attr:`Hl7Error.ack_code` and whose ERR segment carries :attr:`Hl7Error.location`
(ERR-2), :attr:`Hl7Error.code` (ERR-3) and the message text (ERR-8)::

    Hl7Error (DrimboxError)                 base; AE unless stated
    ├── FramingError                        MLLP frame unusable (oversized, cut short): AR, 207
    ├── HeaderError                         MSH unreadable (no MSH, bad separators, charset): AR
    ├── SegmentSequenceError                100: a required segment is missing or out of order
    ├── RequiredFieldMissing                101
    ├── DataTypeError                       102: bad date, bad base64, malformed CDA XML, bad INS
    ├── TableValueNotFound                  103: a coded value outside its table
    ├── UnsupportedMessageType              200: MSH-9.1 is not ORU or MDM: AR
    ├── UnsupportedEventCode                201: MSH-9.2 is not R01/T02/T04/T10: AR
    ├── UnsupportedVersion                  203: MSH-12 is not a v2.x version: AR
    └── ApplicationInternalError            207: the node could not take the message (queue down)

HL7 v2.5 §2.9.2 (original acknowledgment mode): AR when the message is refused for what it *is*
(type, version, framing) — resending it unchanged will fail again; AE when its *content* is wrong or
the receiver failed to process it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from drimbox.errors import DrimboxError

__all__ = [
    "AckCode",
    "ApplicationInternalError",
    "DataTypeError",
    "ErrorCode",
    "ErrorLocation",
    "FramingError",
    "HeaderError",
    "Hl7Error",
    "RequiredFieldMissing",
    "SegmentSequenceError",
    "TableValueNotFound",
    "UnsupportedEventCode",
    "UnsupportedMessageType",
    "UnsupportedVersion",
]


class AckCode(StrEnum):
    """MSA-1 Acknowledgment Code (HL7 table 0008, original mode)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


class ErrorCode(IntEnum):
    """HL7 table 0357 Message Error Condition Codes (ERR-3 in v2.5+, ERR-1.4 before)."""

    ACCEPTED = 0
    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    VALUE_TOO_LONG = 104
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def meaning(self) -> str:
        """The table's own text for the code (ERR-3.2)."""
        return _MEANINGS[self]


_MEANINGS = {
    ErrorCode.ACCEPTED: "Message accepted",
    ErrorCode.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE_ERROR: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.VALUE_TOO_LONG: "Value too long",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCode.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCode.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """Where the error is: HL7 ERL data type (ERR-2), 1-based positions, ``None`` = not applicable.

    ``segment`` is the segment id (``PID``), ``sequence`` its occurrence in the message (``OBX`` 1
    is the first OBX), ``field`` the field position and so on down to the sub-component.
    """

    segment: str
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        text = self.segment if self.sequence == 1 else f"{self.segment}[{self.sequence}]"
        if self.field is not None:
            text += f"-{self.field}"
            if self.repetition not in (None, 1):
                text += f"({self.repetition})"
            if self.component is not None:
                text += f".{self.component}"
                if self.subcomponent is not None:
                    text += f".{self.subcomponent}"
        return text


class Hl7Error(DrimboxError):
    """A message the node refuses, with what the ACK must say about it.

    Parameters
    ----------
    message
        Human-readable reason (ERR-8); says what was expected and what was found.
    location
        The segment/field at fault (ERR-2); ``None`` when the fault is the message as a whole.
    """

    code: ErrorCode = ErrorCode.APPLICATION_INTERNAL_ERROR
    ack_code: AckCode = AckCode.ERROR

    def __init__(self, message: str, location: ErrorLocation | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location is not None else ""
        return f"{self.message} (HL7 0357 {int(self.code)}{where})"


class FramingError(Hl7Error):
    """The MLLP frame cannot be taken: larger than the limit, or cut short by a new start block."""

    code = ErrorCode.APPLICATION_INTERNAL_ERROR
    ack_code = AckCode.REJECT


class HeaderError(Hl7Error):
    """The MSH segment cannot be read (absent, bad delimiters, unknown character set)."""

    code = ErrorCode.SEGMENT_SEQUENCE_ERROR
    ack_code = AckCode.REJECT

    def __init__(self, message: str, location: ErrorLocation | None = None, *, code: ErrorCode | None = None) -> None:
        super().__init__(message, location)
        if code is not None:
            self.code = code


class SegmentSequenceError(Hl7Error):
    """A segment the message needs is missing (``PID``, the CDA ``OBX``) or out of order."""

    code = ErrorCode.SEGMENT_SEQUENCE_ERROR


class RequiredFieldMissing(Hl7Error):
    """A field (or a CDA element) the node needs is empty."""

    code = ErrorCode.REQUIRED_FIELD_MISSING


class DataTypeError(Hl7Error):
    """A value does not have its data type's form (date, base64, XML, INS with a wrong key…)."""

    code = ErrorCode.DATA_TYPE_ERROR


class TableValueNotFound(Hl7Error):
    """A coded value is not in its table (a MetaDMPMSS flag neither ``Y`` nor ``N``…)."""

    code = ErrorCode.TABLE_VALUE_NOT_FOUND


class UnsupportedMessageType(Hl7Error):
    """MSH-9.1 is not a message type the node takes (ORU, MDM)."""

    code = ErrorCode.UNSUPPORTED_MESSAGE_TYPE
    ack_code = AckCode.REJECT


class UnsupportedEventCode(Hl7Error):
    """MSH-9.2 is not an event the node takes (R01 for ORU; T02, T04, T10 for MDM)."""

    code = ErrorCode.UNSUPPORTED_EVENT_CODE
    ack_code = AckCode.REJECT


class UnsupportedVersion(Hl7Error):
    """MSH-12 is not an HL7 v2 version."""

    code = ErrorCode.UNSUPPORTED_VERSION_ID
    ack_code = AckCode.REJECT


class ApplicationInternalError(Hl7Error):
    """The node could not process a valid message (the publication queue refused it)."""

    code = ErrorCode.APPLICATION_INTERNAL_ERROR
