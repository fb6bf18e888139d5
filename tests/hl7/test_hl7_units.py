"""Small parts of the HL7 reader: timestamps, MSH, INS keys, PRT identifiers, CDA quirks."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from drimbox.hl7 import DEFAULT_HEADER, HeaderError, is_valid_ins, read_header, salvage_header
from drimbox.hl7.cda import _repair
from drimbox.hl7.participants import id_nat_struct
from drimbox.hl7.timestamps import parse_timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20210108111700+0100", datetime(2021, 1, 8, 10, 17, tzinfo=UTC)),
        ("20210708111700+0200", datetime(2021, 7, 8, 9, 17, tzinfo=UTC)),
        ("20210708111700", datetime(2021, 7, 8, 9, 17, tzinfo=UTC)),  # Paris summer time
        ("20210108111700", datetime(2021, 1, 8, 10, 17, tzinfo=UTC)),  # Paris winter time
        ("20210108", datetime(2021, 1, 7, 23, 0, tzinfo=UTC)),
        ("2021", datetime(2020, 12, 31, 23, 0, tzinfo=UTC)),
        ("20210108111700.123-0300", datetime(2021, 1, 8, 14, 17, 0, 123000, tzinfo=UTC)),
        ("20210108111700.1234567+0000", datetime(2021, 1, 8, 11, 17, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps(value: str, expected: datetime) -> None:
    assert parse_timestamp(value) == expected


def test_timestamp_default_zone_is_a_parameter() -> None:
    """An overseas site (Réunion, UTC+4) sends local times without an offset."""
    assert parse_timestamp("20210108111700", ZoneInfo("Indian/Reunion")) == datetime(2021, 1, 8, 7, 17, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "2021-01-08", "20211308", "20210230", "202101081117001", "20210108+2500", "x"])
def test_bad_timestamps(value: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("ins", "valid"),
    [
        ("279035121518989", True),  # the ANS test patient
        ("279035121518988", False),
        ("2790351215189", False),
        ("1840520A1234567", False),
        ("27903512151898X", False),
    ],
)
def test_ins_key(ins: str, valid: bool) -> None:
    assert is_valid_ins(ins) is valid


def test_corsican_ins() -> None:
    nir = "185052A123456"
    key = 97 - int(nir.replace("2A", "19")) % 97
    assert is_valid_ins(f"{nir}{key:02d}")
    assert not is_valid_ins(f"{nir}{(key % 97) + 1:02d}")


@pytest.mark.parametrize(
    ("identifier", "kind", "expected"),
    [
        ("750803447", "FINEG", "1750803447"),
        ("1750803447", "FINEG", "1750803447"),
        ("75080344700012", "SIRET", "375080344700012"),
        ("1234", "IDNST", "1234"),
    ],
)
def test_id_nat_struct(identifier: str, kind: str, expected: str) -> None:
    assert id_nat_struct(identifier, kind) == expected


def test_mojibake_repair() -> None:
    assert _repair("CR dâ€™imagerie mÃ©dicale") == "CR d’imagerie médicale"
    assert _repair("Ã€ l'hÃ´pital") == "À l'hôpital"
    assert _repair("médicale") == "médicale"  # proper text is left alone
    assert _repair("Ãx") == "Ãx"  # not mojibake after all: left alone


def test_header_reads_fields_raw() -> None:
    header = read_header(
        b"\r\nMSH|^~\\&|R\\F\\IS|SITE|BOX|HOSP|20250101||MDM^T10^MDM_T02|C\\S\\1|P|2.6|||||FRA|8859/15\r"
    )
    assert header.field(3) == "R\\F\\IS"
    assert (header.message_code, header.trigger_event, header.message_type) == ("MDM", "T10", "MDM^T10")
    assert (header.control_id, header.version, header.codec) == ("C\\S\\1", "2.6", "iso8859-15")
    assert header.version_tuple == (2, 6)


@pytest.mark.parametrize("charset", ["UTF-8", "ISO-8859-1", "unicode utf-8"])
def test_tolerated_charset_spellings(charset: str) -> None:
    header = read_header(f"MSH|^~\\&|A|B|C|D|||ORU^R01|1|P|2.5||||||{charset}\r".encode())
    assert header.codec is not None


@pytest.mark.parametrize("data", [b"", b"MSH", b"MSH|", b"PID|1", b"MSH ^~\\& |"])
def test_unreadable_headers(data: bytes) -> None:
    with pytest.raises(HeaderError):
        read_header(data)


def test_salvaged_header_keeps_what_can_be_echoed() -> None:
    header = salvage_header(b"MSH|^^\\&|RIS|SITE|BOX|HOSP|2025||ORU^R01^ORU_R01|C9|P|2.5||||||KOI8\rPID|")
    assert (header.control_id, header.field(3), header.version, header.codec) == ("C9", "RIS", "2.5", None)
    assert header.encoding_characters == "^~\\&" and header.character_set == ""


@pytest.mark.parametrize("data", [b"", b"garbage", b"MSH1^~\\&1", b"MSH", b"MSH\r^~\\&|"])
def test_nothing_to_salvage(data: bytes) -> None:
    assert salvage_header(data) is DEFAULT_HEADER
