"""Malformed and unsupported messages: each refusal has its HL7 0357 code, location and ACK code.

Messages are derived from the ANS sample of exam C (ORU, CR-separated), one defect at a time.
"""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest
from hl7_samples import cr_message, report_spec, sample_message

from drimbox.hl7 import (
    AckCode,
    ApplicationInternalError,
    DataTypeError,
    ErrorCode,
    ErrorLocation,
    HeaderError,
    Hl7Error,
    RequiredFieldMissing,
    SegmentSequenceError,
    TableValueNotFound,
    UnsupportedEventCode,
    UnsupportedMessageType,
    UnsupportedVersion,
    parse_report,
)
from drimbox.reports import IdentityStatus
from drimbox.testdata import make_ins
from drimbox.testdata.ans_samples import ANS_PATIENT
from drimbox.testdata.cda import ReportSpec, make_report_cda


def _segments(message: bytes) -> list[bytes]:
    return message.rstrip(b"\r").split(b"\r")


def _join(segments: list[bytes]) -> bytes:
    return b"\r".join(segments) + b"\r"


def _replace_field(message: bytes, segment: bytes, number: int, value: bytes, occurrence: int = 1) -> bytes:
    """Set field ``number`` of the ``occurrence``-th ``segment`` (MSH numbering handled)."""
    out, seen = [], 0
    for line in _segments(message):
        if line.startswith(segment + b"|"):
            seen += 1
            if seen == occurrence:
                fields = line.split(b"|")
                index = number - 1 if segment == b"MSH" else number
                fields += [b""] * (index + 1 - len(fields))
                fields[index] = value
                line = b"|".join(fields)
        out.append(line)
    return _join(out)


def _without(message: bytes, segment: bytes) -> bytes:
    return _join([line for line in _segments(message) if not line.startswith(segment + b"|")])


def _refusal(message: bytes) -> Hl7Error:
    with pytest.raises(Hl7Error) as caught:
        parse_report(message)
    return caught.value


BASE = cr_message("C-ORU")


def test_the_base_message_is_fine() -> None:
    assert parse_report(BASE).patient.ins == "279035121518989"


@pytest.mark.parametrize(
    ("message", "kind", "code", "ack", "location"),
    [
        pytest.param(
            BASE[: BASE.index(b"\rPID")],
            SegmentSequenceError,
            100,
            "AE",
            ErrorLocation("PID"),
            id="truncated-after-MSH",
        ),
        pytest.param(
            BASE[: BASE.index(b"\rPRT") - 1000],
            DataTypeError,
            102,
            "AE",
            ErrorLocation("OBX", 1, 5, component=5),
            id="truncated-in-the-CDA",
        ),
        pytest.param(b"PID|||X\r", HeaderError, 100, "AR", ErrorLocation("MSH"), id="no-MSH"),
        pytest.param(
            BASE.replace(b"MSH|^~\\&|", b"MSH|^^\\&|", 1),
            HeaderError,
            102,
            "AR",
            ErrorLocation("MSH", field=2),
            id="duplicate-encoding-characters",
        ),
        pytest.param(
            BASE.replace(b"MSH|^~\\&|", b"MSH|^~|", 1),
            HeaderError,
            102,
            "AR",
            ErrorLocation("MSH", field=2),
            id="two-encoding-characters",
        ),
        pytest.param(
            BASE.replace(b"MSH|^~\\&|", b"MSH1^~\\&1", 1).replace(b"|", b"1"),
            HeaderError,
            102,
            "AR",
            ErrorLocation("MSH", field=1),
            id="digit-field-separator",
        ),
        pytest.param(
            BASE.replace(b"MSH|^~\\&|", b"MSH|!~\\&|", 1),
            UnsupportedMessageType,
            200,
            "AR",
            ErrorLocation("MSH", field=9, component=1),
            id="other-component-separator-than-the-body",
        ),
        pytest.param(_without(BASE, b"PID"), SegmentSequenceError, 100, "AE", ErrorLocation("PID"), id="no-PID"),
        pytest.param(
            _replace_field(BASE, b"OBX", 5, b"^TEXT^XML^Base64^not*base64!"),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("OBX", 1, 5, component=5),
            id="bad-base64",
        ),
        pytest.param(
            _replace_field(BASE, b"OBX", 5, b"^TEXT^XML^Base64^" + base64.b64encode(b"<Clinical")),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("OBX", 1, 5, component=5),
            id="bad-CDA-XML",
        ),
        pytest.param(
            _replace_field(BASE, b"OBX", 5, b"^TEXT^XML^Base64^" + base64.b64encode(b"<html/>")),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("OBX", 1, 5, component=5),
            id="not-a-CDA",
        ),
        pytest.param(
            _replace_field(BASE, b"OBX", 5, b"^TEXT^XML^A^<x/>"),
            TableValueNotFound,
            103,
            "AE",
            ErrorLocation("OBX", 1, 5, component=4),
            id="not-base64-encoding",
        ),
        pytest.param(
            _replace_field(BASE, b"OBX", 5, b"^TEXT^XML^Base64^"),
            RequiredFieldMissing,
            101,
            "AE",
            ErrorLocation("OBX", 1, 5, component=5),
            id="empty-OBX-5",
        ),
        pytest.param(
            _replace_field(BASE, b"OBX", 2, b"CE"),
            SegmentSequenceError,
            100,
            "AE",
            ErrorLocation("OBX", field=2),
            id="no-ED-OBX",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 9, b"ADT^A01^ADT_A01"),
            UnsupportedMessageType,
            200,
            "AR",
            ErrorLocation("MSH", field=9, component=1),
            id="ADT",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 9, b"ORU^R30^ORU_R30"),
            UnsupportedEventCode,
            201,
            "AR",
            ErrorLocation("MSH", field=9, component=2),
            id="ORU-R30",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 9, b"MDM^T01^MDM_T01"),
            UnsupportedEventCode,
            201,
            "AR",
            ErrorLocation("MSH", field=9, component=2),
            id="MDM-T01",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 12, b"3.0"),
            UnsupportedVersion,
            203,
            "AR",
            ErrorLocation("MSH", field=12, component=1),
            id="version-3",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 10, b""),
            RequiredFieldMissing,
            101,
            "AE",
            ErrorLocation("MSH", field=10),
            id="no-control-id",
        ),
        pytest.param(
            _replace_field(BASE, b"MSH", 18, b"KOI8 R"),
            HeaderError,
            103,
            "AR",
            ErrorLocation("MSH", field=18),
            id="unknown-charset",
        ),
        pytest.param(
            BASE.replace(b"PAT-TROIS^DOMINIQUE", "PAT-TRÖIS^DOMINIQUE".encode("latin-1"), 1),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("MSH", field=18),
            id="latin-1-bytes-declared-UTF-8",
        ),
        pytest.param(BASE + b"\r" + BASE, SegmentSequenceError, 100, "AE", ErrorLocation("MSH", 2), id="two-messages"),
        pytest.param(
            BASE.replace(b"\rPV1|", b"\rP V1|", 1),
            SegmentSequenceError,
            100,
            "AE",
            ErrorLocation("MSH"),
            id="bad-segment-id",
        ),
        pytest.param(
            _replace_field(BASE, b"PID", 3, b"279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"),
            RequiredFieldMissing,
            101,
            "AE",
            ErrorLocation("PID", field=3),
            id="no-IPP",
        ),
        pytest.param(
            BASE.replace(b"279035121518989^", b"279035121518988^", 1),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("PID", field=3, repetition=1, component=1),
            id="INS-bad-key",
        ),
        pytest.param(
            BASE.replace(b"&1.2.250.1.213.1.4.10&ISO^INS", b"&1.2.3&ISO^INS", 1),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("PID", field=3, repetition=1, component=4),
            id="INS-not-INS-OID",
        ),
        pytest.param(
            _replace_field(BASE, b"PID", 5, b"^DOMINIQUE^^^^^L"),
            RequiredFieldMissing,
            101,
            "AE",
            ErrorLocation("PID", field=5),
            id="no-birth-name",
        ),
        pytest.param(
            _replace_field(BASE, b"PID", 7, b"1979-03-28"),
            DataTypeError,
            102,
            "AE",
            ErrorLocation("PID", field=7),
            id="bad-birth-date",
        ),
        pytest.param(
            _replace_field(BASE, b"PID", 7, b""),
            RequiredFieldMissing,
            101,
            "AE",
            ErrorLocation("PID", field=7),
            id="no-birth-date",
        ),
        pytest.param(
            BASE.replace(b"MASQUE_PS^Masqu", b"MASQUE_PS^Masqu", 1).replace(
                b"||N^^expandedYes-NoIndicator", b"||X^^expandedYes-NoIndicator", 1
            ),
            TableValueNotFound,
            103,
            "AE",
            ErrorLocation("OBX", 2, 5, component=1),
            id="flag-neither-Y-nor-N",
        ),
    ],
)
def test_refusal(message: bytes, kind: type[Hl7Error], code: int, ack: str, location: ErrorLocation) -> None:
    error = _refusal(message)
    assert type(error) is kind, error
    assert error.code == ErrorCode(code)
    assert error.ack_code == AckCode(ack)
    assert error.location == location
    assert error.message and str(int(code)) in str(error)


def _with_cda(spec: ReportSpec) -> bytes:
    return sample_message("C-ORU", spec=spec).replace(b"\r\n", b"\r")


def test_cda_without_study_uid() -> None:
    xml = make_report_cda(report_spec("C-ORU"))
    xml = re.sub(rb'(<serviceEvent classCode="ACT">\s*)<id root="[^"]+"/>', rb"\1", xml)
    error = _refusal(sample_message("C-ORU", cda=xml))
    assert isinstance(error, RequiredFieldMissing) and "Study Instance UID" in error.message
    assert error.location == ErrorLocation("OBX", 1, 5, component=5)


def test_cda_without_version() -> None:
    xml = re.sub(rb"<versionNumber[^>]*/>", b"", make_report_cda(report_spec("C-ORU")))
    error = _refusal(sample_message("C-ORU", cda=xml))
    assert isinstance(error, RequiredFieldMissing) and "versionNumber" in error.message


def test_cda_with_a_bad_timestamp() -> None:
    xml = re.sub(
        rb'<effectiveTime value="[^"]+"/>',
        b'<effectiveTime value="2025-01-14"/>',
        make_report_cda(report_spec("C-ORU")),
        count=1,
    )
    error = _refusal(sample_message("C-ORU", cda=xml))
    assert isinstance(error, DataTypeError) and "effectiveTime" in error.message


def test_cda_about_another_patient_is_refused() -> None:
    other = dataclasses.replace(ANS_PATIENT, ins=make_ins(7, sex="F", birth_date=ANS_PATIENT.birth_date))
    xml = make_report_cda(dataclasses.replace(report_spec("C-ORU"), patient=other))
    error = _refusal(sample_message("C-ORU", cda=xml))
    assert isinstance(error, ApplicationInternalError) and error.ack_code is AckCode.ERROR
    assert "differs" in error.message


def test_cda_entities_are_not_expanded() -> None:
    xml = (
        make_report_cda(report_spec("C-ORU"))
        .replace(b"<ClinicalDocument", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><ClinicalDocument', 1)
        .replace(b"<title>", b"<title>&e;", 1)
    )
    report = parse_report(sample_message("C-ORU", cda=xml))
    assert "root:" not in report.title


def test_unqualified_identity_carries_no_ins() -> None:
    message = _replace_field(BASE, b"PID", 32, b"PROV")
    patient = parse_report(message).patient
    assert patient.status is IdentityStatus.PROVISIONAL
    assert (patient.ins, patient.ins_oid) == (None, None)
    assert patient.ipp == "IPP101"


def test_unqualified_identity_with_a_malformed_ins_is_not_refused() -> None:
    """The INS of an unqualified identity is ignored, so its form does not matter."""
    message = _replace_field(BASE.replace(b"279035121518989^", b"12345^", 1), b"PID", 32, b"")
    assert parse_report(message).patient.ins is None


def test_undeclared_latin_1_is_read() -> None:
    message = _replace_field(BASE, b"MSH", 18, b"").replace(
        b"PAT-TROIS^DOMINIQUE^", "PAT-TRÖIS^DOMINIQUE^".encode("latin-1"), 1
    )
    assert parse_report(message).patient.birth_family_name == "PAT-TRÖIS"


def test_declared_latin_1_is_read() -> None:
    message = _replace_field(BASE, b"MSH", 18, b"8859/1").replace(
        b"PAT-TROIS^DOMINIQUE^", "PAT-TRÖIS^DOMINIQUE^".encode("latin-1"), 1
    )
    assert parse_report(message).patient.birth_family_name == "PAT-TRÖIS"


def test_escape_sequences_are_undone() -> None:
    message = BASE.replace(b"PAT-TROIS^DOMINIQUE^", b"PAT\\T\\TROIS^DOMINIQUE^", 1)
    assert parse_report(message).patient.birth_family_name == "PAT&TROIS"


def test_broken_escape_sequence_is_a_data_type_error() -> None:
    message = BASE.replace(b"PAT-TROIS^DOMINIQUE^", b"PAT\\.spX\\TROIS^DOMINIQUE^", 1)
    error = _refusal(message)
    assert isinstance(error, DataTypeError) and error.location is not None and error.location.segment == "PID"


def test_lf_separated_segments() -> None:
    assert parse_report(BASE.replace(b"\r", b"\n")) == parse_report(BASE)


def test_accession_from_obr_when_the_cda_has_none() -> None:
    xml = re.sub(rb"<ps3-20:accessionNumber[^>]*/>", b"", make_report_cda(report_spec("C-ORU")))
    xml = re.sub(rb'<id root="1.2.250.1.213.4.5.2.6" extension="[^"]+"/>', b"", xml)
    report = parse_report(sample_message("C-ORU", cda=xml))
    assert report.accession_number == "09011600123"


def test_mdm_without_any_accession_is_refused() -> None:
    xml = re.sub(rb"<ps3-20:accessionNumber[^>]*/>", b"", make_report_cda(report_spec("C-MDM")))
    xml = re.sub(rb'<id root="1.2.250.1.213.4.5.2.6" extension="[^"]+"/>', b"", xml)
    error = _refusal(sample_message("C-MDM", cda=xml))
    assert isinstance(error, RequiredFieldMissing) and "accession" in error.message


def test_order_id_is_the_accession_when_there_is_no_accession_number() -> None:
    """The layout DESIGN F1 describes: the accession in inFulfillmentOf/order/id."""
    xml = re.sub(rb"<ps3-20:accessionNumber[^>]*/>", b"", make_report_cda(report_spec("C-MDM")))
    report = parse_report(sample_message("C-MDM", cda=xml))
    assert (report.accession_number, report.accession_issuer, report.order_id) == (
        "OPN103",
        "1.2.250.1.213.4.5.2.6",
        None,
    )


def test_withdrawal_by_orc_alone() -> None:
    message = _replace_field(BASE, b"ORC", 1, b"CA")
    assert parse_report(message).action.value == "withdraw"


def test_withdrawal_by_obx_11_alone() -> None:
    message = _replace_field(BASE, b"OBX", 11, b"D")
    assert parse_report(message).action.value == "withdraw"
