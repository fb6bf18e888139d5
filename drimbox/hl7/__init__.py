"""HL7 v2 in: the MLLP listener, ORU/MDM report parsing, CDA header extraction, ACKs (DESIGN F1).

- :func:`parse_report` — one ORU^R01 / MDM^T02, T10, T04 message → :class:`~drimbox.reports.ImagingReport`.
- :func:`build_ack` / :func:`encode_ack` — the ACK of a message (AA/AE/AR, ERR with HL7 0357 codes).
- :class:`MllpListener` — the MLLP server calling an ``accept(report)`` that queues durably.
- :func:`read_header`, :func:`read_cda` — the MSH and the CDA header on their own.

Every refusal is an :class:`Hl7Error` (see :mod:`drimbox.hl7.errors` for the tree and the codes).
"""

from drimbox.hl7.ack import build_ack, encode_ack
from drimbox.hl7.cda import CdaHeader, read_cda
from drimbox.hl7.errors import (
    AckCode,
    ApplicationInternalError,
    DataTypeError,
    ErrorCode,
    ErrorLocation,
    FramingError,
    HeaderError,
    Hl7Error,
    RequiredFieldMissing,
    SegmentSequenceError,
    TableValueNotFound,
    UnsupportedEventCode,
    UnsupportedMessageType,
    UnsupportedVersion,
)
from drimbox.hl7.header import DEFAULT_HEADER, MessageHeader, read_header, salvage_header
from drimbox.hl7.listener import Accept, MllpListener
from drimbox.hl7.mllp import frame
from drimbox.hl7.parse import SUPPORTED_EVENTS, parse_report
from drimbox.hl7.patient import is_valid_ins

__all__ = [
    "DEFAULT_HEADER",
    "SUPPORTED_EVENTS",
    "Accept",
    "AckCode",
    "ApplicationInternalError",
    "CdaHeader",
    "DataTypeError",
    "ErrorCode",
    "ErrorLocation",
    "FramingError",
    "HeaderError",
    "Hl7Error",
    "MessageHeader",
    "MllpListener",
    "RequiredFieldMissing",
    "SegmentSequenceError",
    "TableValueNotFound",
    "UnsupportedEventCode",
    "UnsupportedMessageType",
    "UnsupportedVersion",
    "build_ack",
    "encode_ack",
    "frame",
    "is_valid_ins",
    "parse_report",
    "read_cda",
    "read_header",
    "salvage_header",
]
