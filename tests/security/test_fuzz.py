"""Fuzzing the parsers that read input from outside (issue 7, hostile input): whatever the bytes, each
one answers with its documented refusal, never another exception.

- DICOM Part 10 as STOW-RS receives it (the part reader, and the whole route over a real file store:
  400/409, never 500), as the consumer reads a KOS (:class:`MalformedKos`), as the IOCM watcher reads
  what the SCP quarantined (skipped, and the next file still handled), and inside an XDM archive
  (:class:`InvalidRequest`). Hostile shapes: truncation anywhere, bytes flipped, an element claiming
  4 GiB, sequences nested thousands deep.
- ``multipart/related`` bodies as arbitrary bytes (the round-trip properties are in
  tests/dicomweb_gateway/test_multipart.py): :class:`MalformedMultipart` / :class:`PayloadTooLarge`
  only, and no temp file left behind.
- HL7: the CDA inside OBX-5 replaced by hostile XML (entity expansion, garbage, deep nesting); the
  HL7 framing and segment fuzzing is in tests/hl7/test_hl7_fuzz.py.

Every property is bounded (``max_examples``); the file runs in seconds.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from dicomweb_gateway import GatewaySettings
from dicomweb_gateway.app import create_app
from dicomweb_gateway.backends.filesystem import FileStore
from dicomweb_gateway.errors import MalformedMultipart, PayloadTooLarge
from dicomweb_gateway.multipart import MultipartParser, SpooledPart, spool_parts
from dicomweb_gateway.stow import _identify
from drimbox.errors import InvalidRequest
from drimbox.hl7 import Hl7Error, parse_report
from drimbox.publish.iocm import RejectionWatcher
from drimbox.publish.outbox import Outbox
from drimbox.retrieve.kos_reader import MalformedKos, read_kos
from drimbox.retrieve.xdm import read_xdm

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
BOUNDARY = "fuzz-boundary"
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


# -- hostile DICOM ----------------------------------------------------------------------------------


def _part10(ds: Dataset, sop_class: str) -> bytes:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _image() -> bytes:
    """A small valid CT-like instance."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "P1", "Fuzz^Patient", "CT"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(32)
    return _part10(ds, ds.SOPClassUID)


def _kos() -> bytes:
    """A small valid imaging manifest."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = KOS_CLASS, str(generate_uid()), "KO"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = "1234567890123"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "113030", "DCM", "Manifest"
    ds.ConceptNameCodeSequence = [title]
    sop = Dataset()
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.RetrieveURL = f"https://127.0.0.2/dicom-web/studies/{ds.StudyInstanceUID}/series/{series.SeriesInstanceUID}"
    series.ReferencedSOPSequence = [sop]
    study = Dataset()
    study.StudyInstanceUID = ds.StudyInstanceUID
    study.ReferencedSeriesSequence = [series]
    ds.CurrentRequestedProcedureEvidenceSequence = [study]
    return _part10(ds, KOS_CLASS)


IMAGE, KOS = _image(), _kos()
_META_END = IMAGE.index(b"\x08\x00\x16\x00")  # the data set starts at (0008,0016) SOPClassUID


def _explicit(group: int, element: int, vr: bytes, value: bytes | None, *, length: int | None = None) -> bytes:
    size = len(value or b"") if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        head = struct.pack("<HH2sHI", group, element, vr, 0, size)
    else:
        head = struct.pack("<HH2sH", group, element, vr, size)
    return head + (value or b"")


def huge_element(base: bytes) -> bytes:
    """The data set of ``base`` followed by a TextValue (UT) that claims 0xFFFFFFF0 bytes and carries 16."""
    return base + _explicit(0x0040, 0xA160, b"UT", b"x" * 16, length=0xFFFFFFF0)


def deep_sequences(base: bytes, depth: int) -> bytes:
    """A ContentSequence nested ``depth`` levels, undefined lengths, never closed."""
    level = _explicit(0x0040, 0xA730, b"SQ", None, length=0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    return base + level * depth


HOSTILE = {
    "huge element": huge_element(IMAGE),
    "huge element in a KOS": huge_element(KOS),
    "deep sequences": deep_sequences(IMAGE, 5000),
    "deep sequences in a KOS": deep_sequences(KOS, 5000),
    "meta only": IMAGE[:_META_END],
    "empty": b"",
    "preamble only": bytes(128) + b"DICM",
}


def mutated(base: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, flipped bytes and inserted garbage of ``base``."""
    cut = st.integers(0, len(base)).map(lambda n: base[:n])
    flips = st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda changes: _apply(base, changes))
    insert = st.tuples(st.integers(0, len(base)), st.binary(min_size=1, max_size=64)).map(
        lambda at: base[: at[0]] + at[1] + base[at[0]:])
    return st.one_of(cut, flips, insert, st.sampled_from(list(HOSTILE.values())))


def _apply(base: bytes, changes: list[tuple[int, int]]) -> bytes:
    data = bytearray(base)
    for index, value in changes:
        data[index] = value
    return bytes(data)


def _identify_bytes(data: bytes, tmp: Path) -> tuple[str, str, str, str] | None:
    path = tmp / "part.dcm"
    path.write_bytes(data)
    return _identify(SpooledPart(path, {"content-type": "application/dicom"}, len(data), 1))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_stow_part_reader_on_hostile_shapes(name: str, tmp_path: Path) -> None:
    result = _identify_bytes(HOSTILE[name], tmp_path)
    assert result is None or all(isinstance(v, str) for v in result)


@FUZZ
@given(data=mutated(IMAGE))
def test_stow_part_reader_on_mutated_files(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = _identify_bytes(data, tmp_path_factory.mktemp("part"))
    assert result is None or all(isinstance(v, str) for v in result)


def _multipart(*bodies: bytes) -> bytes:
    out = b""
    for body in bodies:
        out += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@pytest.fixture(scope="module")
def stow_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The gateway over a real file store, with small STOW limits."""
    root = tmp_path_factory.mktemp("stow-fuzz")
    store = FileStore(root / "store")
    settings_ = GatewaySettings(max_stow_bytes=4 * 1024 * 1024, max_stow_parts=8, spool_dir=root)
    return TestClient(create_app(store, settings_))


def test_stow_route_refuses_hostile_instances(stow_client: TestClient) -> None:
    """Each hostile part fails alone (409, CANNOT_UNDERSTAND); with a good one beside it, 202."""
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    for name, body in HOSTILE.items():
        response = stow_client.post("/dicom-web/studies", content=_multipart(body),
                                    headers={"Content-Type": content_type})
        assert response.status_code == 409, (name, response.status_code, response.text[:300])
    mixed = stow_client.post("/dicom-web/studies", content=_multipart(HOSTILE["deep sequences"], IMAGE),
                             headers={"Content-Type": content_type})
    assert mixed.status_code == 202, mixed.text[:300]
    too_many = stow_client.post("/dicom-web/studies", content=_multipart(*[b"x"] * 9),
                                headers={"Content-Type": content_type})
    assert too_many.status_code == 413


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated(IMAGE))
def test_stow_route_on_mutated_files(data: bytes, stow_client: TestClient) -> None:
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    response = stow_client.post("/dicom-web/studies", content=_multipart(data), headers={"Content-Type": content_type})
    assert response.status_code in (200, 202, 409), (response.status_code, response.text[:300])


# -- KOS -------------------------------------------------------------------------------------------


def test_kos_reader_accepts_the_valid_manifest() -> None:
    assert read_kos(KOS) is not None


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_kos_reader_on_hostile_shapes(name: str) -> None:
    with pytest.raises(MalformedKos):
        read_kos(HOSTILE[name])


@FUZZ
@given(data=mutated(KOS))
def test_kos_reader_on_mutated_manifests(data: bytes) -> None:
    try:
        read_kos(data)
    except MalformedKos:
        pass


# -- XDM -------------------------------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


METADATA = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&b;</lcm:SubmitObjectsRequest>"""
ARCHIVE = _zip({"IHE_XDM/SUBSET01/METADATA.XML": METADATA, "IHE_XDM/SUBSET01/IMAGES/I0001": IMAGE,
                "INDEX.HTM": b"<html/>", "README.TXT": b"XDM"})

members = st.dictionaries(
    st.sampled_from(["IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/I1.DCM", "../evil", "/abs", "INDEX.HTM",
                     "IHE_XDM/SUBSET01/DIR/", "a" * 300]),
    st.one_of(st.binary(max_size=200), st.sampled_from([METADATA, IMAGE, KOS, HOSTILE["deep sequences"]])),
    max_size=5)


@FUZZ
@given(archive=st.one_of(members.map(_zip), mutated(ARCHIVE), st.binary(max_size=300)))
def test_xdm_reader_refuses_with_its_problems(archive: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("xdm")
    path = tmp / "upload.zip"
    path.write_bytes(archive)
    try:
        read_xdm(path, tmp)
    except InvalidRequest as refused:
        assert refused.problems


# -- multipart -------------------------------------------------------------------------------------

_MULTIPART_NOISE = st.lists(st.one_of(
    st.sampled_from([f"--{BOUNDARY}".encode(), b"\r\n", b"\n", b"--", b"Content-Type: application/dicom",
                     b":", b" ", b"\r\n\r\n", f"--{BOUNDARY}--".encode()]),
    st.binary(max_size=40)), max_size=40).map(b"".join)


@FUZZ
@given(body=st.one_of(_MULTIPART_NOISE, st.binary(max_size=500)),
       cuts=st.lists(st.integers(1, 64), max_size=10))
def test_multipart_parser_refuses_only_as_documented(body: bytes, cuts: list[int]) -> None:
    parser = MultipartParser(BOUNDARY, max_header_bytes=256)
    try:
        position = 0
        for cut in cuts:
            parser.feed(body[position:position + cut])
            position += cut
        parser.feed(body[position:])
        parser.close()
    except MalformedMultipart:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_MULTIPART_NOISE)
def test_spool_parts_leaves_no_file_behind(body: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    spool = tmp_path_factory.mktemp("spool")

    async def stream() -> AsyncIterator[bytes]:
        for offset in range(0, len(body), 50):
            yield body[offset:offset + 50]

    async def consume() -> None:
        async for part in spool_parts(stream(), BOUNDARY, max_bytes=2000, max_parts=3, directory=spool):
            part.path.unlink()

    try:
        asyncio.run(consume())
    except (MalformedMultipart, PayloadTooLarge):
        pass
    assert list(spool.iterdir()) == []


# -- HL7: the CDA inside OBX-5 ---------------------------------------------------------------------

def _hl7_with_cda(cda: bytes) -> bytes:
    encoded = base64.b64encode(cda).decode()
    return ("MSH|^~\\&|RIS|SITE|DRIMBOX|SITE|20250101120000||MDM^T02^MDM_T02|MSG1|P|2.6\r"
            "EVN|T02|20250101120000\r"
            "PID|1||IPP1^^^SITE^PI||FUZZ^PATIENT||19700101|F\r"
            "PV1|1|O\r"
            "TXA|1|CR|TX|20250101120000|||||||DOC1||||||AU\r"
            f"OBX|1|ED|18748-4^CR^LN||^TEXT^XML^Base64^{encoded}||||||F\r").encode()


_HOSTILE_CDA = [
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3">&d;</ClinicalDocument>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3">&e;</ClinicalDocument>',
    b'<ClinicalDocument xmlns="urn:hl7-org:v3">' + b"<a>" * 10000 + b"</a>" * 10000 + b"</ClinicalDocument>",
    b"<ClinicalDocument",
    b"",
]


@FUZZ
@given(cda=st.one_of(st.sampled_from(_HOSTILE_CDA), st.binary(max_size=300)))
def test_hl7_report_with_hostile_cda(cda: bytes) -> None:
    try:
        parse_report(_hl7_with_cda(cda))
    except Hl7Error:
        pass


# -- what the SCP quarantines: the IOCM watcher ------------------------------------------------------


def test_iocm_watcher_skips_hostile_files_and_goes_on(tmp_path: Path) -> None:
    """The SCP files C-STOREs without decoding them; the watcher that reads the quarantine later must
    skip a hostile file (left for an operator) rather than fail the scan — before this, one file
    raising RecursionError or struct.error ended every scan at that file, so no later note was seen."""
    quarantine = tmp_path / "quarantine"
    for index, (name, data) in enumerate(sorted(HOSTILE.items())):
        folder = quarantine / "AE" / f"{index:02d}"
        folder.mkdir(parents=True)
        (folder / f"{name.replace(' ', '-')}.dcm").write_bytes(data)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        watcher = RejectionWatcher(quarantine, tmp_path / "processed", outbox, poll_s=60)
        assert watcher.scan() == 0
    finally:
        outbox.close()
    assert len(list(quarantine.glob("*/*/*.dcm"))) == len(HOSTILE)  # left in place for an operator
