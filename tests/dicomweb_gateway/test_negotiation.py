"""Accept parsing (RFC 9110) and transfer syntax negotiation (PS3.18 §8.7), unit and over HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from gwtest import Corpus, instance_path, split_parts
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from dicomweb_gateway import FileStore, GatewaySettings, create_app
from dicomweb_gateway.errors import InvalidQuery, NotAcceptable
from dicomweb_gateway.negotiation import choose_media_type, negotiate_dicom, negotiate_frames, parse_accept
from dicomweb_gateway.syntaxes import deliverable_syntaxes

# The ANS validator's header (DESIGN F7), verbatim, trailing comma included.
VALIDATOR_ACCEPT = (
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.70;q=0.9;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.80;q=0.8;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.91;q=0.6;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.50;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.51;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.100;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.101;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.102;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.103;q=0.5;boundary=**,'
    'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.1;q=0.4;boundary=**,'
)


def test_parse_accept_validator_header() -> None:
    """Ten ranges, quoted type, q-values after other parameters, trailing empty element."""
    ranges = parse_accept(VALIDATOR_ACCEPT)
    assert len(ranges) == 10
    assert [r.q for r in ranges] == [0.9, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4]
    assert ranges[0].param("type") == "application/dicom"
    assert ranges[0].param("transfer-syntax") == "1.2.840.10008.1.2.4.70"
    assert ranges[0].param("boundary") == "**"


def test_parse_accept_forms() -> None:
    """Wildcards, spaces, quoted strings with escapes, defaults."""
    assert parse_accept(None)[0].type == "*"
    ranges = parse_accept('image/* ; q=0.3 , */*;q=0.1, text/plain; x="a,\\"b"')
    assert [(r.type, r.subtype, r.q) for r in ranges] == [("image", "*", 0.3), ("*", "*", 0.1), ("text", "plain", 1.0)]
    assert ranges[2].param("x") == 'a,"b'


@pytest.mark.parametrize(
    "header", ["application", "*/json", "text/plain; q=2", "text/plain; q=0.12345", 'a/b; x="open', "a/b c/d"]
)
def test_parse_accept_malformed(header: str) -> None:
    """Malformed ranges are 400 material."""
    with pytest.raises(InvalidQuery):
        parse_accept(header)


def test_choose_media_type() -> None:
    """Most specific range gives the q; q=0 excludes; server order breaks ties."""
    offered = ["image/jpeg", "image/png"]
    assert choose_media_type("image/png, image/*;q=0.5", offered) == "image/png"
    assert choose_media_type("*/*", offered) == "image/jpeg"
    assert choose_media_type("image/*, image/jpeg;q=0", offered) == "image/png"
    with pytest.raises(NotAcceptable):
        choose_media_type("application/json", offered)


def test_validator_header_prefers_lossless_jpegls() -> None:
    """Uncompressed data: 4.70 cannot be encoded, 4.80 (q=0.8) can -> JPEG-LS Lossless."""
    rep = negotiate_dicom(VALIDATOR_ACCEPT)
    options = deliverable_syntaxes(ExplicitVRLittleEndian, has_pixels=True, encode=True)
    assert rep.select(ExplicitVRLittleEndian, options) == JPEGLSLossless
    no_encode = deliverable_syntaxes(ExplicitVRLittleEndian, has_pixels=True, encode=False)
    assert rep.select(ExplicitVRLittleEndian, no_encode) == ExplicitVRLittleEndian
    # Stored JPEG-LS: sent as stored; stored lossy JPEG baseline: as stored (q=0.5 > 0.4).
    assert rep.select(JPEGLSLossless, deliverable_syntaxes(JPEGLSLossless, has_pixels=True, encode=True)) == (
        JPEGLSLossless
    )
    assert rep.select(JPEGBaseline8Bit, deliverable_syntaxes(JPEGBaseline8Bit, has_pixels=True, encode=True)) == (
        JPEGBaseline8Bit
    )


def test_never_lossy_and_defaults() -> None:
    """Lossless data never goes lossy; no transfer-syntax means Explicit VR LE; * means stored."""
    lossy_only = negotiate_dicom('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50')
    native = deliverable_syntaxes(ExplicitVRLittleEndian, has_pixels=True, encode=True)
    assert lossy_only.select(ExplicitVRLittleEndian, native) is None
    default = negotiate_dicom('multipart/related; type="application/dicom"')
    assert default.select(JPEGLSLossless, deliverable_syntaxes(JPEGLSLossless, has_pixels=True, encode=True)) == (
        ExplicitVRLittleEndian
    )
    star = negotiate_dicom('multipart/related; type="application/dicom"; transfer-syntax=*')
    assert star.select(JPEGLSLossless, [JPEGLSLossless, ExplicitVRLittleEndian]) == JPEGLSLossless
    anything = negotiate_dicom("*/*")
    implicit = deliverable_syntaxes(ImplicitVRLittleEndian, has_pixels=True, encode=True)
    assert anything.select(ImplicitVRLittleEndian, implicit) == ExplicitVRLittleEndian


def test_q_zero_refuses() -> None:
    """An explicit q=0 refuses a syntax even when * is acceptable."""
    rep = negotiate_dicom(
        'multipart/related; type="application/dicom"; transfer-syntax=*, '
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80; q=0'
    )
    assert rep.select(JPEGLSLossless, deliverable_syntaxes(JPEGLSLossless, has_pixels=True, encode=True)) is None


def test_no_pixels_means_native_only() -> None:
    """An instance without pixel data is not 'compressed' into JPEG-LS."""
    rep = negotiate_dicom(VALIDATOR_ACCEPT)
    no_pixels = deliverable_syntaxes(ExplicitVRLittleEndian, has_pixels=False, encode=True)
    assert rep.select(ExplicitVRLittleEndian, no_pixels) == ExplicitVRLittleEndian


def test_negotiate_dicom_errors() -> None:
    """Nothing DICOM in Accept -> 406; a bad transfer-syntax UID -> 400."""
    with pytest.raises(NotAcceptable):
        negotiate_dicom("application/json")
    with pytest.raises(InvalidQuery, match="not a valid UID"):
        negotiate_dicom('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.01')


def test_negotiate_frames() -> None:
    """Frames: octet-stream by default, the stored bitstream on request."""
    assert negotiate_frames(None, JPEGLSLossless).media_type == "application/octet-stream"
    star = negotiate_frames('multipart/related; type="application/octet-stream"; transfer-syntax=*', JPEGLSLossless)
    assert (star.media_type, star.transfer_syntax) == ("image/jls", JPEGLSLossless)
    assert negotiate_frames('multipart/related; type="image/jls"', JPEGLSLossless).media_type == "image/jls"
    with pytest.raises(NotAcceptable):
        negotiate_frames('multipart/related; type="image/jp2"', JPEGLSLossless)


# ---------------------------------------------------------------------------------------- HTTP


def test_http_200_validator_header_is_lossless(client: TestClient, corpus: Corpus) -> None:
    """The validator's header on uncompressed mammography: JPEG-LS parts, pixels decode identically."""
    url = f"/dicom-web/studies/{corpus.mammo.study_instance_uid}"
    r = client.get(url, headers={"Accept": VALIDATOR_ACCEPT})
    assert r.status_code == 200
    assert "transfer-syntax=1.2.840.10008.1.2.4.80" in r.headers["content-type"]
    parts = split_parts(r.content, r.headers["content-type"])
    assert len(parts) == 4
    for (headers, body), path in zip(parts, corpus.mammo.files, strict=True):
        assert headers["content-type"] == f"application/dicom; transfer-syntax={JPEGLSLossless}"
        got = dcmread(io.BytesIO(body))
        assert got.file_meta.TransferSyntaxUID == JPEGLSLossless
        assert np.array_equal(got.pixel_array, dcmread(path).pixel_array)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                                    RLELossless, JPEG2000Lossless])  # fmt: skip
def test_http_200_each_lossless_syntax(client: TestClient, corpus: Corpus, syntax: str) -> None:
    """Every native or lossless syntax asked for alone is delivered, pixel-identical."""
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    r = client.get(instance_path(corpus.ct), headers={"Accept": accept})
    assert r.status_code == 200
    [(_, body)] = split_parts(r.content, r.headers["content-type"])
    got = dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(got.pixel_array, dcmread(corpus.ct.files[0]).pixel_array)


def test_http_compressed_stored(client: TestClient, corpus: Corpus) -> None:
    """JPEG-LS stored: default -> decompressed Explicit VR LE; * -> the stored file byte for byte."""
    url = instance_path(corpus.mr_jpegls)
    stored = corpus.mr_jpegls.files[0]
    r = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    [(headers, body)] = split_parts(r.content, r.headers["content-type"])
    assert headers["content-type"].endswith(ExplicitVRLittleEndian)
    assert np.array_equal(dcmread(io.BytesIO(body)).pixel_array, dcmread(stored).pixel_array)
    r = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    [(headers, body)] = split_parts(r.content, r.headers["content-type"])
    assert headers["content-type"].endswith(JPEGLSLossless)
    assert body == stored.read_bytes()


def test_http_single_part_application_dicom(client: TestClient, corpus: Corpus) -> None:
    """An instance asked for as bare application/dicom comes as one Part 10 body."""
    r = client.get(instance_path(corpus.ct), headers={"Accept": "application/dicom"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom")
    assert r.content == corpus.ct.files[0].read_bytes()


def test_http_406_lists_available(client: TestClient, corpus: Corpus) -> None:
    """Only a lossy syntax acceptable for lossless data: 406 with what is available."""
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={JPEGBaseline8Bit}'
    r = client.get(instance_path(corpus.mammo), headers={"Accept": accept})
    assert r.status_code == 406
    available = r.json()["available"]
    assert any(ExplicitVRLittleEndian in a for a in available)
    assert not any(JPEGBaseline8Bit in a for a in available)
    assert client.get(f"/dicom-web/studies/{corpus.mammo.study_instance_uid}",
                      headers={"Accept": "application/dicom"}).status_code == 406  # fmt: skip
    assert client.get("/dicom-web/studies", headers={"Accept": "application/xml"}).status_code == 406


def test_http_400_malformed_accept(client: TestClient, corpus: Corpus) -> None:
    """A malformed Accept or transfer-syntax is a 400 with a message."""
    r = client.get(instance_path(corpus.mammo), headers={"Accept": "multipart/related; q=5"})
    assert r.status_code == 400
    assert "q-value" in r.json()["detail"]
    bad_uid = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.abc'
    assert client.get(instance_path(corpus.mammo), headers={"Accept": bad_uid}).status_code == 400


def test_http_415_stow_media_type(client: TestClient) -> None:
    """STOW with a body that is not multipart/related application/dicom: 415."""
    assert (
        client.post("/dicom-web/studies", content=b"{}", headers={"Content-Type": "application/json"}).status_code
        == 415
    )
    xml = 'multipart/related; type="application/dicom+xml"; boundary=x'
    assert client.post("/dicom-web/studies", content=b"", headers={"Content-Type": xml}).status_code == 415


def test_encoding_disabled(corpus: Corpus, store: FileStore) -> None:
    """With on-the-fly encoding off, the validator gets Explicit VR Little Endian."""
    with TestClient(create_app(store, GatewaySettings(encode_compressed=False))) as c:
        r = c.get(instance_path(corpus.mammo), headers={"Accept": VALIDATOR_ACCEPT})
    assert r.status_code == 200
    [(headers, body)] = split_parts(r.content, r.headers["content-type"])
    assert headers["content-type"].endswith(ExplicitVRLittleEndian)
    assert body == corpus.mammo.files[0].read_bytes()
