"""Import into a real Orthanc (F8): C-STORE or STOW-RS, then Storage Commitment heard by the node's SCP.

What is checked: the instances are in the PACS afterwards with the same SOP Instance UIDs, the
reconciled identity and byte-identical pixel data (read back through Orthanc's REST API); the import
counts as committed only once Orthanc's N-EVENT-REPORT (sent on a new association to the node's AE)
names them; a reference Orthanc does not have comes back failed; a PACS that never reports leaves the
import uncommitted; a mixed-patient import sends nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from drimbox.config import LocalAE, NodeSettings, RetrieveSettings, StorageSettings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.errors import ImportFailed
from drimbox.pacs import MoveMediator, NodeScp, PacsClient
from drimbox.pacs.commitment import CommitmentRegistry, request_commitment
from drimbox.pacs.connect import Connector
from drimbox.retrieve.identity import INS_ISSUER
from drimbox.retrieve.importer import StudyImporter
from drimbox.retrieve.model import PatientTraits
from drimbox.testdata import GeneratedStudy, Patient, make_patient, write_ct_study, write_mammography_study


def _traits(patient: Patient, local_id: str | None = "IPP-B-7") -> PatientTraits:
    assert patient.ins is not None
    return PatientTraits(ins=patient.ins, ins_oid=patient.ins_oid, birth_name=patient.family,
                         first_given_name=patient.given,
                         birth_date=date(int(patient.birth_date[:4]), int(patient.birth_date[4:6]),
                                         int(patient.birth_date[6:])),
                         sex="F", local_id=local_id)


def _settings(importer_ae: LocalAE, orthanc: OrthancProcess, tmp: Path, **retrieve: Any) -> NodeSettings:
    return NodeSettings(
        name="site-b", local=importer_ae, pacs=orthanc.remote_ae(), storage=StorageSettings(data_dir=tmp / "data"),
        retrieve=RetrieveSettings.model_validate(
            {"identity_rule": "local", "local_issuer": "CH-B", "commitment_timeout_s": 20.0, **retrieve}),
    )


class Node:
    """The parts of a node an import uses: its SCP (with the commitment registry) and its PACS client."""

    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.mediator = MoveMediator(quarantine_dir=settings.storage.quarantine_dir)
        self.commitments = CommitmentRegistry()
        self.scp = NodeScp(settings.local, settings.dimse, settings.storage, self.mediator,
                           services=[self.commitments])
        self.pacs = PacsClient(settings.local, settings.pacs, settings.dimse, mediator=self.mediator)

    def importer(self) -> StudyImporter:
        return StudyImporter(self.settings, self.pacs, commitments=self.commitments)


@pytest.fixture()
def node(importer_ae: LocalAE, orthanc_b_clean: OrthancProcess, tmp_path: Path) -> Iterator[Node]:
    parts = Node(_settings(importer_ae, orthanc_b_clean, tmp_path))
    parts.scp.start()
    try:
        yield parts
    finally:
        parts.scp.stop()
        parts.pacs.close()


@pytest.fixture(scope="module")
def mammo(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    return write_mammography_study(tmp_path_factory.mktemp("mg"), make_patient(21), size="small")


def _orthanc_instance(orthanc: OrthancProcess, sop: str) -> bytes:
    found = orthanc.client.post("/tools/lookup", content=sop)
    found.raise_for_status()
    ids = [r["ID"] for r in found.json() if r["Type"] == "Instance"]
    assert ids, f"{sop} is not in Orthanc"
    data = orthanc.client.get(f"/instances/{ids[0]}/file")
    data.raise_for_status()
    return data.content


def _check_in_pacs(orthanc: OrthancProcess, study: GeneratedStudy, tmp_path: Path, patient_id: str) -> None:
    for instance in study.instances:
        stored = tmp_path / f"{instance.sop_instance_uid}.dcm"
        stored.write_bytes(_orthanc_instance(orthanc, instance.sop_instance_uid))
        ds, original = dcmread(stored), dcmread(instance.path)
        assert ds.SOPInstanceUID == original.SOPInstanceUID
        assert ds.SeriesInstanceUID == original.SeriesInstanceUID and ds.StudyInstanceUID == original.StudyInstanceUID
        assert ds.PatientID == patient_id
        assert ds.OtherPatientIDsSequence[0].PatientID == study.patient.ins
        assert ds.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientID == study.patient.ipp
        assert bytes(ds.PixelData) == bytes(original.PixelData)


class Recorder:
    def __init__(self) -> None:
        self.imported: list[tuple[str, int, bool]] = []
        self.commitment: int | None = None

    def instance_imported(self, sop_instance_uid: str, size: int, ok: bool) -> None:
        self.imported.append((sop_instance_uid, size, ok))

    def commitment_requested(self, count: int) -> None:
        self.commitment = count


def test_cstore_import_is_done_once_committed(node: Node, orthanc_b_clean: OrthancProcess, mammo: GeneratedStudy,
                                              tmp_path: Path) -> None:
    files = [i.path for i in mammo.instances]
    recorder = Recorder()
    importer = node.importer()
    try:
        report = importer.import_study(files, _traits(mammo.patient), progress=recorder, source="site-a")
    finally:
        importer.close()
    uids = {i.sop_instance_uid for i in mammo.instances}
    assert set(report.stored) == uids and set(report.committed) == uids
    assert report.done and not report.failed and not report.uncommitted and report.transaction_uid
    assert {"PatientID", "IssuerOfPatientID"} <= set(report.changed)
    assert report.bytes >= sum(p.stat().st_size for p in files)
    assert recorder.commitment == len(files) and {u for u, _, ok in recorder.imported if ok} == uids
    _check_in_pacs(orthanc_b_clean, mammo, tmp_path, "IPP-B-7")
    assert not any(importer.staging_dir.iterdir())  # reconciled copies are removed
    print(f"\nC-STORE import + commitment of {len(files)} MG instances ({report.bytes / 1e6:.1f} MB): "  # noqa: T201
          f"{report.seconds:.2f} s")


def test_stow_import(importer_ae: LocalAE, orthanc_b_clean: OrthancProcess, tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "ct", make_patient(22), series=2, slices_per_series=3, rows=64, cols=64)
    settings = _settings(importer_ae, orthanc_b_clean, tmp_path, identity_rule="ins", import_via="stow",
                         import_stow_url=f"{orthanc_b_clean.http_url}/dicom-web/studies")
    # No registry given: the importer listens on the node's address for the report itself.
    importer = StudyImporter(settings)
    try:
        report = importer.import_study([i.path for i in study.instances], _traits(study.patient, local_id=None))
    finally:
        importer.close()
    assert report.done, report.problems
    assert set(report.committed) == {i.sop_instance_uid for i in study.instances}
    _check_in_pacs(orthanc_b_clean, study, tmp_path, study.patient.ins or "")
    stored = dcmread(tmp_path / f"{study.instances[0].sop_instance_uid}.dcm")
    assert stored.IssuerOfPatientID == INS_ISSUER
    assert stored.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == study.patient.ins_oid


def test_commitment_reports_an_instance_the_pacs_does_not_have(node: Node, orthanc_b_clean: OrthancProcess,
                                                               mammo: GeneratedStudy) -> None:
    orthanc_b_clean.upload([mammo.instances[0].path])
    known = (mammo.instances[0].sop_class_uid, mammo.instances[0].sop_instance_uid)
    unknown = (mammo.instances[0].sop_class_uid, generate_uid())
    connector = Connector(node.settings.local, node.settings.pacs, node.settings.dimse)
    try:
        result, problem = request_commitment(connector, node.commitments, [known, unknown], timeout_s=20)
    finally:
        connector.shutdown()
    assert problem is None and result is not None
    assert result.committed == (known[1],)
    assert result.failed == ((unknown[1], "no such object instance"),)
    assert result.reporter == orthanc_b_clean.aet


def test_commitment_failure_fails_the_import(node: Node, orthanc_b_clean: OrthancProcess, mammo: GeneratedStudy,
                                             tmp_path: Path) -> None:
    """Orthanc deletes an instance between its C-STORE and the commitment check: the import fails, naming it."""
    victim = mammo.instances[1].sop_instance_uid

    class DeleteOne(Recorder):
        def commitment_requested(self, count: int) -> None:
            found = orthanc_b_clean.client.post("/tools/lookup", content=victim).json()
            orthanc_b_clean.client.delete(f"/instances/{found[0]['ID']}").raise_for_status()

    importer = node.importer()
    try:
        with pytest.raises(ImportFailed, match="did not commit 1 of 4") as failed:
            importer.import_study([i.path for i in mammo.instances], _traits(mammo.patient), progress=DeleteOne())
    finally:
        importer.close()
    assert failed.value.failed == (victim,)


def test_no_report_leaves_the_import_uncommitted(importer_ae: LocalAE, orthanc_b_clean: OrthancProcess,
                                                 mammo: GeneratedStudy, tmp_path: Path) -> None:
    """Orthanc reports to the node's declared address; the node listens elsewhere: no report arrives."""
    settings = _settings(importer_ae, orthanc_b_clean, tmp_path, commitment_timeout_s=1.5)
    orthanc_b_clean.add_modality("drimbox", importer_ae.aet, "127.0.0.9", 9)  # unreachable
    importer = StudyImporter(settings, commitments=CommitmentRegistry())  # nobody delivers to this registry
    try:
        started = time.monotonic()
        report = importer.import_study([i.path for i in mammo.instances], _traits(mammo.patient))
    finally:
        importer.close()
    assert time.monotonic() - started < 15
    assert len(report.stored) == 4 and not report.committed and set(report.uncommitted) == set(report.stored)
    assert not report.done and any("no storage commitment report" in p for p in report.problems)


def test_mixed_patients_send_nothing(node: Node, orthanc_b_clean: OrthancProcess, mammo: GeneratedStudy,
                                     tmp_path: Path) -> None:
    other = write_ct_study(tmp_path / "ct", make_patient(23), series=1, slices_per_series=1, rows=16, cols=16)
    importer = node.importer()
    try:
        with pytest.raises(ImportFailed, match="different patients"):
            importer.import_study([mammo.instances[0].path, other.instances[0].path], _traits(mammo.patient))
    finally:
        importer.close()
    assert orthanc_b_clean.instance_count() == 0
