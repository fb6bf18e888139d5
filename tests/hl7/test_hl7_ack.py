"""ACKs: MSH swapped and echoed, MSA code and control id, ERR location/code/text, per HL7 version.

Each ACK is also read back with the ``hl7`` library, as a RIS would read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hl7
import pytest
from hl7_samples import cr_message

from drimbox.hl7 import (
    DEFAULT_HEADER,
    AckCode,
    DataTypeError,
    ErrorLocation,
    Hl7Error,
    SegmentSequenceError,
    build_ack,
    encode_ack,
    parse_report,
    read_header,
)

NOW = datetime(2025, 1, 14, 10, 35, 12, tzinfo=timezone(timedelta(hours=1)))


def _ack_of(message: bytes) -> hl7.Message:
    header = read_header(message)
    try:
        parse_report(message)
    except Hl7Error as error:
        text = build_ack(header, error.ack_code, error, now=NOW, control_id="ACK1")
    else:
        text = build_ack(header, AckCode.ACCEPT, now=NOW, control_id="ACK1")
    return hl7.parse(text)


def test_accepted_oru() -> None:
    ack = _ack_of(cr_message("C-ORU", control_id="CTRL42"))
    assert str(ack.segment("MSH")) == (
        "MSH|^~\\&|DRIMBOX|CENTRE_AMBROISE|RIS_TEST|CENTRE_AMBROISE|20250114103512+0100||ACK^R01^ACK|ACK1|P|2.5"
        "||||||UNICODE UTF-8"
    )
    assert str(ack.segment("MSA")) == "MSA|AA|CTRL42"
    assert [str(s[0]) for s in ack] == ["MSH", "MSA"]


def test_accepted_mdm_update_answers_in_its_own_version_and_event() -> None:
    ack = _ack_of(cr_message("G1_MAJ-MDM"))
    assert ack.extract_field("MSH", 1, 9, 1, 2) == "T10"
    assert ack.extract_field("MSH", 1, 12) == "2.6"


def test_sender_and_receiver_are_swapped() -> None:
    message = cr_message("C-ORU").replace(b"|RIS_TEST|CENTRE_AMBROISE|DRIMBOX|CENTRE_AMBROISE|", b"|RIS|SITE|BOX|HOSP|")
    ack = _ack_of(message)
    assert [ack.extract_field("MSH", 1, n) for n in (3, 4, 5, 6)] == ["BOX", "HOSP", "RIS", "SITE"]


def test_empty_receiver_is_replaced_by_the_node_name() -> None:
    header = read_header(b"MSH|^~\\&|RIS|SITE|||20250101||ORU^R01|C1|P|2.5\r")
    text = build_ack(header, AckCode.ACCEPT, application="DRIMBOX_A", facility="CH_A")
    assert text.startswith("MSH|^~\\&|DRIMBOX_A|CH_A|RIS|SITE|")


def test_error_missing_pid() -> None:
    message = b"\r".join(s for s in cr_message("C-ORU").split(b"\r") if not s.startswith(b"PID|"))
    ack = _ack_of(message)
    assert str(ack.segment("MSA")).startswith("MSA|AE|MSG0001|")
    err = ack.segment("ERR")
    assert str(err) == ("ERR||PID^1|100^Segment sequence error^HL70357|E||||the message has no PID segment")


def test_error_location_down_to_the_component() -> None:
    message = cr_message("C-ORU").replace(b"^TEXT^XML^Base64^", b"^TEXT^XML^Base64^*", 1)
    ack = _ack_of(message)
    assert ack.extract_field("MSA", 1, 1) == "AE"
    assert str(ack.segment("ERR")(2)) == "OBX^1^5^1^5"
    assert str(ack.segment("ERR")(3)) == "102^Data type error^HL70357"
    assert ack.extract_field("ERR", 1, 8).startswith("OBX-5.5 is not valid base64")


def test_reject_unsupported_type() -> None:
    message = cr_message("C-ORU").replace(b"|ORU^R01^ORU_R01|", b"|ADT^A08^ADT_A01|", 1)
    ack = _ack_of(message)
    assert ack.extract_field("MSA", 1, 1) == "AR"
    assert ack.extract_field("MSH", 1, 9, 1, 2) == "A08"
    assert str(ack.segment("ERR")(3)) == "200^Unsupported message type^HL70357"
    assert str(ack.segment("ERR")(2)) == "MSH^1^9^1^1"


def test_v23_uses_err_1() -> None:
    header = read_header(b"MSH|^~\\&|RIS|SITE|BOX|HOSP|20250101||ORU^R01|C1|P|2.3.1\r")
    error = SegmentSequenceError("no PID", ErrorLocation("PID"))
    ack = hl7.parse(build_ack(header, AckCode.ERROR, error))
    assert str(ack.segment("ERR")) == "ERR|PID^1^^100&Segment sequence error&HL70357"
    assert ack.extract_field("MSH", 1, 9) == "ACK"
    assert ack.extract_field("MSH", 1, 9, 1, 2) == "R01"
    assert len(ack.segment("MSH")(9)[0]) == 2  # ACK^R01: no message structure before v2.4


def test_v27_has_no_msa_3() -> None:
    header = read_header(b"MSH|^~\\&#|RIS|SITE|BOX|HOSP|20250101||ORU^R01^ORU_R01|C1|P|2.7\r")
    error = DataTypeError("bad", ErrorLocation("PID", field=7))
    text = build_ack(header, AckCode.ERROR, error)
    assert "\rMSA|AE|C1\r" in text
    assert text.startswith("MSH|^~\\&#|")


def test_free_text_is_escaped() -> None:
    error = DataTypeError("value a|b^c&d~e\\f\rnext line", ErrorLocation("PID", field=5))
    text = build_ack(DEFAULT_HEADER, AckCode.ERROR, error)
    err = text.split("\r")[2]
    assert err.endswith("|value a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f next line")
    assert hl7.parse(text).extract_field("ERR", 1, 8) == "value a|b^c&d~e\\f next line"


def test_other_delimiters_are_used() -> None:
    header = read_header(b"MSH!$*/%!RIS!SITE!BOX!HOSP!20250101!!ORU$R01!C1!P!2.5\r")
    error = DataTypeError("a!b", ErrorLocation("OBX", 2, 5, component=1))
    text = build_ack(header, AckCode.ERROR, error, control_id="X")
    assert text.split("\r")[0].startswith("MSH!$*/%!BOX!HOSP!RIS!SITE!")
    assert "!ACK$R01$ACK!X!P!2.5" in text
    assert text.split("\r")[2] == "ERR!!OBX$2$5$1$1!102$Data type error$HL70357!E!!!!a/F/b"


def test_unreadable_header_gets_the_default_one() -> None:
    error = SegmentSequenceError("the message does not start with an MSH segment", ErrorLocation("MSH"))
    ack = hl7.parse(build_ack(DEFAULT_HEADER, AckCode.REJECT, error))
    assert ack.extract_field("MSA", 1, 1) == "AR"
    assert ack.extract_field("MSA", 1, 2) == ""
    assert ack.extract_field("MSH", 1, 12) == "2.5"


@pytest.mark.parametrize(
    ("charset", "expected"), [(b"UNICODE UTF-8", "é".encode()), (b"8859/1", "é".encode("latin-1")), (b"", b"?")]
)
def test_ack_bytes_use_the_message_charset(charset: bytes, expected: bytes) -> None:
    header = read_header(b"MSH|^~\\&|RIS|SITE|BOX|HOSP|20250101||ORU^R01|C1|P|2.5||||||" + charset + b"\r")
    data = encode_ack(build_ack(header, AckCode.ERROR, DataTypeError("é")), header)
    assert data.endswith(b"|" + expected + b"\r")


def test_ack_control_ids_are_fresh() -> None:
    header = read_header(cr_message("C-ORU"))
    first, second = (hl7.parse(build_ack(header, AckCode.ACCEPT)).extract_field("MSH", 1, 10) for _ in range(2))
    assert first != second and len(first) == 20
