"""Small pieces: HL7 forms, stored-query values, MIME splitting, the blob store, and the ANS cross-validator sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RegistryUnderTest
from lxml import etree
from xdsfactory import CROSS_SAMPLE, FAILURE, SUCCESS, Submission, extrinsic, set_slot

from registry.config import INS_OIDS
from registry.soap.mtom import MultipartRejected, build_mtom, parse_multipart_related
from registry.store.blobs import BlobNotFound, FileBlobStore
from registry.xds.hl7 import (
    Hl7FormatError,
    ins_key_is_valid,
    parse_dtm,
    parse_patient_id,
    parse_reference_id,
    parse_source_patient_id,
    parse_xon,
)
from registry.xds.query_params import code_filters, reference_filters, time_bound


@pytest.mark.parametrize(
    ("ins", "valid"),
    [
        ("162018885045327", True),  # the ANS sample's test INS
        ("162018885045328", False),
        ("1850499123456" + f"{97 - int('1850499123456') % 97:02d}", True),
        (
            "18504" + "2A" + "123456" + f"{97 - int('18504' + '19' + '123456') % 97:02d}",
            True,
        ),  # Corsica: 2A counts as 19
        ("18504" + "2B" + "123456" + f"{97 - int('18504' + '18' + '123456') % 97:02d}", True),  # 2B counts as 18
        ("18504" + "2C" + "12345612", False),
        ("16201888504532", False),
    ],
)
def test_ins_key(ins: str, valid: bool) -> None:
    assert ins_key_is_valid(ins) is valid


def test_patient_id_forms() -> None:
    assert parse_patient_id("162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH", INS_OIDS).authority_oid == (
        "1.2.250.1.213.1.4.10"
    )
    for bad in (
        "162018885045327^^^1.2.250.1.213.1.4.10^NH",
        "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^PI",
        "162018885045327",
        "162018885045327^^^&1.2.250.1.213.1.4.10&L^NH",
    ):
        with pytest.raises(Hl7FormatError):
            parse_patient_id(bad, INS_OIDS)
    with pytest.raises(Hl7FormatError, match="not an INS assigning authority"):
        parse_patient_id("162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH", INS_OIDS[:2])


def test_dtm_is_utc_to_the_second() -> None:
    assert parse_dtm("20231103161723", "creationTime").isoformat() == "2023-11-03T16:17:23+00:00"
    with pytest.raises(Hl7FormatError, match="time-zone offset"):
        parse_dtm("20231103161723-0500", "creationTime")


def test_local_identifiers_may_have_a_namespace_authority() -> None:
    assert parse_source_patient_id("IPP123^^^HOPITAL-X^PI").id == "IPP123"
    accession = parse_reference_id("A1^^^RIS-X^urn:ihe:iti:xds:2013:accession")
    assert (accession.id, accession.authority_oid) == ("A1", "")
    with pytest.raises(Hl7FormatError, match="is not '&<OID>&ISO'"):
        parse_source_patient_id("IPP123^^^&not-an-oid&ISO^PI")


def test_xon_needs_its_identifier() -> None:
    assert parse_xon("BCOM^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^499700367909006", "authorInstitution").id == (
        "499700367909006"
    )
    with pytest.raises(Hl7FormatError, match="XON.10"):
        parse_xon("BCOM^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST", "authorInstitution")


def test_query_value_forms() -> None:
    assert [(f.code, f.scheme) for f in code_filters(["31^^1.2.250.1.213.1.1.4.1", "IMG-KOS"])] == [
        ("31", "1.2.250.1.213.1.1.4.1"),
        ("IMG-KOS", None),
    ]
    study, accession = reference_filters(
        ["1.2.3^^^&1.2.3.4&ISO^urn:ihe:iti:xds:2016:studyInstanceUID", "A42^^^^urn:ihe:iti:xds:2013:accession"]
    )
    assert (study.id_value, study.authority, study.id_type) == (
        "1.2.3",
        "1.2.3.4",
        "urn:ihe:iti:xds:2016:studyInstanceUID",
    )
    assert (accession.id_value, accession.authority) == ("A42", None)
    assert [time_bound(v, "t") for v in ("2021", "202102", "20210203", "20210203040506")] == [
        "20210101000000",
        "20210201000000",
        "20210203000000",
        "20210203040506",
    ]


def test_multipart_round_trip_and_rejections() -> None:
    body, content_type = build_mtom(b"<e/>", [("a@x", "application/dicom", b"\r\n--not-a-boundary\r\n\x00")], "act")
    boundary = content_type.split('boundary="')[1].split('"')[0]
    root, part = parse_multipart_related(body, boundary)
    assert (root.body, part.content_id, part.body) == (b"<e/>", "a@x", b"\r\n--not-a-boundary\r\n\x00")
    lf_only = b"--b\nContent-ID: <r>\n\n<e/>\n--b--\n"
    assert parse_multipart_related(lf_only, "b")[0].body == b"<e/>"
    with pytest.raises(MultipartRejected, match="closing boundary"):
        parse_multipart_related(b"--b\r\nContent-ID: <r>\r\n\r\n<e/>", "b")
    with pytest.raises(MultipartRejected, match="not found"):
        parse_multipart_related(b"no boundary here", "b")


def test_blob_store_is_content_addressed(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    key = store.put(b"KOS")
    assert store.put(b"KOS") == key and store.get(key) == b"KOS"
    assert not list((tmp_path / "tmp").iterdir())  # no temporary file left behind
    with pytest.raises(BlobNotFound):
        store.get("0" * 64)
    with pytest.raises(BlobNotFound):
        store.get("../../etc/passwd")


def test_cross_validator_sample_local_times_are_refused(registry: RegistryUnderTest) -> None:
    """The ANS cross-validation sample carries serviceStart/StopTime with a +0100 offset: not UTC."""
    reply = registry.publish(Submission(), sample=CROSS_SAMPLE)
    assert reply.status == FAILURE
    contexts = [text for _, text, _ in reply.errors]
    assert any("serviceStartTime '20210104092200+0100' is not a UTC time" in c for c in contexts), contexts
    assert any("serviceStopTime '20210104160500+0100'" in c for c in contexts), contexts


def test_cross_validator_sample_in_utc_is_accepted(registry: RegistryUnderTest) -> None:
    def utc(root: etree._Element) -> None:
        kos = extrinsic(root, "DocumentKOS")
        set_slot(kos, "serviceStartTime", ["20210104082200"])
        set_slot(kos, "serviceStopTime", ["20210104150500"])

    reply = registry.publish(Submission(), sample=CROSS_SAMPLE, mutate=utc)
    assert (reply.status, reply.errors) == (SUCCESS, [])
