"""C-STORE of files to real peers, streamed as stored (exact-match contexts, batches of 128)."""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset, FileMetaDataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid
from pynetdicom import AllStoragePresentationContexts

from drimbox.config import DimseSettings, LocalAE, RemoteAE, StorageSettings
from drimbox.pacs import NodeScp, PacsClient
from drimbox.testdata import GeneratedStudy

from .peers import Dcmtk, Pacs


def test_store_a_study_then_find_it(client: PacsClient, pacs: Pacs, ct_study: GeneratedStudy) -> None:
    report = client.store(ct_study.files)

    assert report.ok
    assert sorted(report.stored) == sorted(ct_study.sop_instance_uids())
    assert report.bytes_sent == ct_study.total_bytes()
    assert client.walk_study(ct_study.study_instance_uid).sop_instance_uids() == set(ct_study.sop_instance_uids())


def test_compressed_file_is_sent_as_stored_or_reported(
    client: PacsClient, pacs: Pacs, dcmtk: Dcmtk, mg_study: GeneratedStudy, tmp_path: Path
) -> None:
    """Chunked sending needs the exact syntax: Orthanc accepts JPEG-LS, dcmqrscp (no codecs) does not."""
    compressed = tmp_path / "jls.dcm"
    assert dcmtk("dcmcjpls", mg_study.files[0], compressed).returncode == 0
    sop = str(dcmread(compressed, stop_before_pixels=True).SOPInstanceUID)
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not DICOM")

    report = client.store([compressed, not_dicom])

    failed = {f.path: f for f in report.failed}
    assert "not a DICOM file" in failed.pop(not_dicom).reason
    if pacs.name == "orthanc":
        assert report.stored == (sop,)
        walk = client.walk_study(mg_study.study_instance_uid)
        assert walk.sop_instance_uids() == {sop}
    else:
        refused = failed.pop(compressed)
        assert refused.sop_instance_uid == sop
        assert f"accepted no presentation context for {mg_study.instances[0].sop_class_uid}" in refused.reason
        assert JPEGLSLossless in refused.reason
    assert not failed


def test_more_than_128_contexts_are_batched(
    node_ae: LocalAE,
    node_scp: NodeScp,
    node_storage: StorageSettings,
    dimse_settings: DimseSettings,
    tmp_path: Path,
) -> None:
    """130 SOP classes: two associations, every file stored (by the node's own SCP)."""
    classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts][:130]
    study = generate_uid()
    paths = []
    for number, sop_class in enumerate(classes):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.PatientID, ds.InstanceNumber = "MANY", number
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = tmp_path / f"{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    to_node = RemoteAE(aet=node_ae.aet, host=node_ae.host, port=node_ae.port)

    with PacsClient(node_ae, to_node, dimse_settings) as client:
        report = client.store(paths)

    assert report.ok, report.failed[:3]
    assert len(report.stored) == 130
    assert len(list((node_storage.quarantine_dir / study).rglob("*.dcm"))) == 130
