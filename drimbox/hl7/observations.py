"""The OBX segments of a report message: the CDA (ED, base64) and the MetaDMPMSS flags.

- The report is the first OBX whose value type (OBX-2) is ``ED``: OBX-5 is
  ``^TEXT^XML^Base64^<data>`` (ED: source application, type of data, data subtype, encoding,
  data — HL7 v2.5 §2.A.24); the ANS samples write the type ``TEXT`` in ORU and ``text`` in MDM.
- Each DMP/MSSanté flag is an OBX of type CE (ORU) or CWE (MDM) whose OBX-3 is
  ``<FLAG>^<label>^MetaDMPMSS`` and whose OBX-5.1 is ``Y`` or ``N`` (HL7 table 0532).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace

import structlog

from drimbox.hl7.errors import (
    DataTypeError,
    ErrorLocation,
    RequiredFieldMissing,
    SegmentSequenceError,
    TableValueNotFound,
)
from drimbox.hl7.message import ParsedMessage, Segment
from drimbox.reports import Visibility

__all__ = ["FLAG_FIELDS", "decode_report_document", "find_report_obx", "read_visibility"]

log = structlog.get_logger(__name__)
_value = ParsedMessage.value

FLAG_FIELDS = {
    "MASQUE_PS": "masked_to_professionals",
    "INVISIBLE_PATIENT": "invisible_to_patient",
    "INVISIBLE_REP_LEGAUX": "invisible_to_legal_representatives",
    "CONNEXION_SECRETE": "secret_connection",
    "MODIF_CONF_CODE": "confidentiality_modified",
    "DESTDMP": "to_dmp",
    "DESTMSSANTEPS": "to_mssante_professionals",
    "DESTMSSANTEPAT": "to_mssante_patient",
    "ACK_RECEPTION": "ack_reception",
    "ACK_LECTURE_MSS": "ack_reading",
}
"""MetaDMPMSS flag code (OBX-3.1) → :class:`~drimbox.reports.Visibility` field."""


def find_report_obx(message: ParsedMessage) -> tuple[int, Segment]:
    """The OBX carrying the report (first of value type ED) and its occurrence number.

    Raises
    ------
    SegmentSequenceError
        The message has no OBX of type ED.
    """
    for sequence, obx in message.all("OBX"):
        if _value(obx, 2).upper() == "ED":
            return sequence, obx
    raise SegmentSequenceError("no OBX of value type ED carrying the CDA report", ErrorLocation("OBX", field=2))


def decode_report_document(obx: Segment, sequence: int) -> bytes:
    """The CDA bytes of the report OBX (OBX-5.5, base64).

    Raises
    ------
    RequiredFieldMissing
        OBX-5.5 is empty.
    TableValueNotFound
        OBX-5.4 (encoding, HL7 table 0299) is not ``Base64``.
    DataTypeError
        OBX-5.5 is not valid base64.
    """
    encoding = _value(obx, 5, 1, 4)
    data = _value(obx, 5, 1, 5)
    if not data:
        raise RequiredFieldMissing(
            "OBX-5.5 (the base64 CDA report) is empty", ErrorLocation("OBX", sequence, 5, component=5)
        )
    if encoding.upper() != "BASE64":
        raise TableValueNotFound(
            f"OBX-5.4 encoding {encoding!r} is not Base64 (HL7 table 0299)",
            ErrorLocation("OBX", sequence, 5, component=4),
        )
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataTypeError(
            f"OBX-5.5 is not valid base64: {exc}", ErrorLocation("OBX", sequence, 5, component=5)
        ) from exc


def read_visibility(message: ParsedMessage) -> Visibility:
    """The MetaDMPMSS flags of the message; flags it does not carry keep their defaults.

    Raises
    ------
    TableValueNotFound
        A flag's value is neither ``Y`` nor ``N``.
    """
    visibility = Visibility()
    for sequence, obx in message.all("OBX"):
        if _value(obx, 3, 1, 3).upper() != "METADMPMSS":
            continue
        flag = _value(obx, 3, 1, 1).upper()
        answer = _value(obx, 5, 1, 1).upper()
        attribute = FLAG_FIELDS.get(flag)
        if attribute is None:
            log.info("unknown MetaDMPMSS flag ignored", flag=flag, obx=sequence)
            continue
        if answer not in ("Y", "N"):
            raise TableValueNotFound(
                f"MetaDMPMSS flag {flag} has value {answer!r}, not Y or N (HL7 table 0532)",
                ErrorLocation("OBX", sequence, 5, component=1),
            )
        visibility = replace(visibility, **{attribute: answer == "Y"})
    return visibility
