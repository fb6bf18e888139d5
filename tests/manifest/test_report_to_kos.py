"""F1 → F2 → KOS in one go: an ANS message over MLLP, its exam walked in Orthanc, its manifest.

In the node ``accept`` only queues (the publication pipeline walks and builds later); here it walks
and builds at once, to check that what the listener hands over is all the manifest needs.
"""

from __future__ import annotations

from pathlib import Path

from hl7_samples import report_spec, sample_message
from kos_fixtures import ROOT
from mllp_client import MllpClient, ack_fields

from drimbox.config import DimseSettings, Hl7Settings, LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.hl7 import MllpListener
from drimbox.manifest import BuiltManifest, ManifestBuilder
from drimbox.pacs import PacsClient
from drimbox.reports import ImagingReport, ReportAction
from drimbox.testdata import ANS_PATIENT, write_exam_study

HOST = "127.0.0.2"


def test_ans_messages_to_manifests(tmp_path: Path, node_ae: LocalAE, orthanc_a_clean: OrthancProcess) -> None:
    exams = {}
    for name in ("C-ORU", "C-MDM", "G1-ORU"):
        spec = report_spec(name)
        if spec.study_instance_uid not in exams:
            exams[spec.study_instance_uid] = write_exam_study(
                tmp_path / name,
                study_uid=spec.study_instance_uid,
                accession=spec.accession_number,
                patient=ANS_PATIENT,
                accession_issuer="1.2.250.1.213.4.5.2.5",
            )
            orthanc_a_clean.upload(exams[spec.study_instance_uid].files)

    built: list[tuple[ImagingReport, BuiltManifest | None]] = []
    dimse = DimseSettings(acse_timeout_s=3, network_timeout_s=30, connect_timeout_s=2, pool_size=1)
    builder = ManifestBuilder(ROOT)

    def accept(report: ImagingReport) -> None:
        if report.action is ReportAction.WITHDRAW:
            built.append((report, None))
            return
        with PacsClient(node_ae, orthanc_a_clean.remote_ae(timeout_s=10), dimse) as pacs:
            built.append((report, builder(pacs.walk_study(report.study_instance_uid), report, 0)))

    listener = MllpListener(Hl7Settings(host=HOST, port=free_port(HOST)), accept)
    listener.start()
    try:
        with MllpClient(listener.address) as client:
            for number, name in enumerate(("C-ORU", "C-MDM", "G1-ORU", "I-MDM")):
                ack = ack_fields(client.exchange(sample_message(name, control_id=f"E2E{number}")))
                assert ack["MSA"][1:3] == ["AA", f"E2E{number}"], ack
    finally:
        listener.stop()

    assert [r.action for r, _ in built] == [ReportAction.PUBLISH] * 3 + [ReportAction.WITHDRAW]
    for report, manifest in built[:3]:
        assert manifest is not None
        kos = manifest.dataset
        expected = exams[report.study_instance_uid]
        referenced = {
            r.ReferencedSOPInstanceUID
            for s in kos.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            for r in s.ReferencedSOPSequence
        }
        assert referenced == set(expected.sop_instance_uids())
        assert kos.PatientID == "279035121518989"
        assert kos.ReferencedRequestSequence[0].AccessionNumber == report.accession_number
    # the ORU and the MDM of exam C carry the same report version (setId, versionNumber): one manifest UID
    assert built[0][1] is not None and built[1][1] is not None
    assert built[0][1].sop_instance_uid == built[1][1].sop_instance_uid
