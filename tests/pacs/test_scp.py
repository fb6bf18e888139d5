"""The node's SCP against DCMTK's storescu/echoscu: transfer syntaxes kept, quarantine, routing, statuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from drimbox.config import DimseSettings, LocalAE, RemoteAE, StorageSettings
from drimbox.pacs import DimseStatus, MoveMediator, NodeScp, PacsClient
from drimbox.testdata import GeneratedStudy

from .peers import Dcmtk

# storescu proposes a compressed syntax only when told to; JPEG lossless process 14 has no
# shortcut option, so an association profile (-xf) proposes it.
_P14_PROFILE = f"""\
[[TransferSyntaxes]]
[P14Syntaxes]
TransferSyntax1 = {JPEGLossless}

[[PresentationContexts]]
[P14Contexts]
PresentationContext1 = {{sop_class}}\\P14Syntaxes

[[Profiles]]
[P14]
PresentationContexts = P14Contexts
"""

# (transfer syntax, encoder command (input and output appended), storescu options, 8-bit source?)
ENCODINGS: list[tuple[UID, list[str], list[str], bool]] = [
    (ExplicitVRLittleEndian, ["dcmconv", "+te"], ["-xe"], False),
    (ImplicitVRLittleEndian, ["dcmconv", "+ti"], ["-xi"], False),
    (ExplicitVRBigEndian, ["dcmconv", "+tb"], ["-xb"], False),
    (DeflatedExplicitVRLittleEndian, ["dcmconv", "+td"], ["-xd"], False),
    (JPEGBaseline8Bit, ["dcmcjpeg", "+eb"], ["-xy"], True),
    (JPEGExtended12Bit, ["dcmcjpeg", "+ee"], ["-xx"], False),
    (JPEGLossless, ["dcmcjpeg", "+el"], ["-xf", "{profile}", "P14"], False),
    (JPEGLosslessSV1, ["dcmcjpeg", "+e1"], ["-xs"], False),
    (JPEGLSLossless, ["dcmcjpls", "+el"], ["-xt"], False),
    (JPEGLSNearLossless, ["dcmcjpls", "+en"], ["-xu"], False),
    (JPEG2000Lossless, ["gdcmconv", "--j2k"], ["-xv"], False),
    (JPEG2000, ["gdcmconv", "--j2k", "--lossy", "-q", "30"], ["-xw"], False),
    (RLELossless, ["dcmcrle"], ["-xr"], False),
]


def _eight_bit_image(path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.ConversionType = "SC8", "HUIT^Bits", "OT", "WSD"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.add.outer(np.arange(64), np.arange(64)) % 251).astype(np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _stored(storage: StorageSettings, ds: Dataset) -> Path:
    return storage.quarantine_dir / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"


def _storescu(dcmtk: Dcmtk, ae: LocalAE, *args: str | Path) -> None:
    result = dcmtk("storescu", "-aet", "MODALITY", "-aec", ae.aet, *args[:-1], ae.host, str(ae.port), args[-1])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("syntax", "encode", "propose", "eight_bit"), ENCODINGS, ids=[e[0].name for e in ENCODINGS])
def test_storescu_each_transfer_syntax_is_stored_as_received(
    dcmtk: Dcmtk,
    node_ae: LocalAE,
    node_scp: NodeScp,
    node_storage: StorageSettings,
    mg_study: GeneratedStudy,
    tmp_path: Path,
    syntax: str,
    encode: list[str],
    propose: list[str],
    eight_bit: bool,
) -> None:
    source = tmp_path / "source.dcm"
    if eight_bit:
        _eight_bit_image(source)
    else:
        ds = dcmread(mg_study.files[0])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(source)
    encoded = tmp_path / "encoded.dcm"
    if encode[0] == "gdcmconv":  # GDCM (Debian libgdcm-tools): DCMTK 3.6.7 has no JPEG 2000 codec
        subprocess.run(["gdcmconv", *encode[1:], str(source), str(encoded)], check=True, capture_output=True)
    else:
        result = dcmtk(encode[0], *encode[1:], source, encoded)
        assert result.returncode == 0, result.stderr
    sent = dcmread(encoded)
    assert sent.file_meta.TransferSyntaxUID == syntax
    profile = tmp_path / "p14.cfg"
    profile.write_text(_P14_PROFILE.format(sop_class=sent.SOPClassUID))
    options = [o.format(profile=profile) for o in propose]

    _storescu(dcmtk, node_ae, *options, encoded)

    received = dcmread(_stored(node_storage, sent))
    assert received.file_meta.TransferSyntaxUID == syntax
    assert received.file_meta.MediaStorageSOPClassUID == sent.file_meta.MediaStorageSOPClassUID
    assert received.file_meta.MediaStorageSOPInstanceUID == sent.file_meta.MediaStorageSOPInstanceUID
    assert bytes(received.PixelData) == bytes(sent.PixelData)
    assert received == sent  # every element of the data set


def test_unsolicited_store_goes_to_quarantine(
    dcmtk: Dcmtk, node_ae: LocalAE, node_scp: NodeScp, node_storage: StorageSettings, ct_study: GeneratedStudy
) -> None:
    _storescu(dcmtk, node_ae, ct_study.files[0])  # exit status 0: acknowledged with Success

    ds = dcmread(ct_study.files[0])
    quarantined = _stored(node_storage, ds)
    assert quarantined.is_file()
    assert dcmread(quarantined).PixelData == ds.PixelData


def test_store_without_originator_is_routed_by_expected_instance(
    dcmtk: Dcmtk,
    node_ae: LocalAE,
    node_scp: NodeScp,
    node_storage: StorageSettings,
    mediator: MoveMediator,
    ct_study: GeneratedStudy,
    tmp_path: Path,
) -> None:
    """storescu sets no Move Originator fields: the mediator falls back on the expected SOP Instance UIDs."""
    expected, unexpected = ct_study.instances[1], ct_study.instances[2]
    with mediator.subscribe(originator_aet=node_ae.aet, expected=[expected.sop_instance_uid], dest=tmp_path) as sub:
        _storescu(dcmtk, node_ae, ct_study.files[1])
        _storescu(dcmtk, node_ae, ct_study.files[2])
        delivered = sub.channel.get(timeout=0)
    assert delivered is not None
    assert delivered.sop_instance_uid == expected.sop_instance_uid
    assert delivered.path.is_relative_to(tmp_path)
    assert (
        node_storage.quarantine_dir
        / ct_study.study_instance_uid
        / unexpected.series_instance_uid
        / f"{unexpected.sop_instance_uid}.dcm"
    ).is_file()


def test_echoscu_and_wrong_called_ae(dcmtk: Dcmtk, node_ae: LocalAE, node_scp: NodeScp) -> None:
    ok = dcmtk("echoscu", "-aec", node_ae.aet, node_ae.host, str(node_ae.port))
    assert ok.returncode == 0, ok.stderr
    wrong = dcmtk("echoscu", "-aec", "SOMEONE_ELSE", node_ae.host, str(node_ae.port))
    assert wrong.returncode != 0
    assert "Called AE Title Not Recognized" in wrong.stderr


def test_failure_statuses(
    node_ae: LocalAE,
    node_scp: NodeScp,
    node_storage: StorageSettings,
    dimse_settings: DimseSettings,
    mg_study: GeneratedStudy,
    tmp_path: Path,
) -> None:
    to_node = RemoteAE(aet=node_ae.aet, host=node_ae.host, port=node_ae.port)
    cannot_write = dcmread(mg_study.files[0])
    cannot_write.StudyInstanceUID = generate_uid()
    (node_storage.quarantine_dir / cannot_write.StudyInstanceUID).write_bytes(b"a file where a directory goes")
    no_study = dcmread(mg_study.files[1])
    del no_study.StudyInstanceUID
    for name, ds in (("cannot-write", cannot_write), ("no-study", no_study)):
        ds.save_as(tmp_path / f"{name}.dcm")

    with PacsClient(node_ae, to_node, dimse_settings) as client:
        report = client.store([tmp_path / "cannot-write.dcm", tmp_path / "no-study.dcm"])

    assert [(f.path.name, f.status) for f in report.failed] == [
        ("cannot-write.dcm", DimseStatus.OUT_OF_RESOURCES),
        ("no-study.dcm", DimseStatus.CANNOT_UNDERSTAND),
    ]
    assert "Refused: Out of Resources" in report.failed[0].reason
