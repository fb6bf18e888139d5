"""``drimbox fetch`` as a user runs it, acting as site B on the demo network: registry look-up by INS,
retrieval from site A over mutual TLS with progress bars, import into site B's Orthanc with storage
commitment. The command runs beside the running site-B node, so it uses an AE title of its own that
site B's Orthanc knows (the node's own address is taken by the node)."""

from __future__ import annotations

import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import httpx
from pydicom import dcmread

from drimbox.devnet.ports import free_port
from drimbox.testdata import make_patient
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams

DRIMBOX = str(Path(sys.executable).parent / "drimbox")


def _lookup(client: httpx.Client, uid: str, kind: str) -> list[str]:
    found = client.post("/tools/lookup", content=uid)
    found.raise_for_status()
    return [r["ID"] for r in found.json() if r["Type"] == kind]


def test_fetch_and_import_a_mammography(net: Net, tmp_path: Path) -> None:
    patient = net.screened_patient
    exams = published_exams(net.endpoints["registry"]["fhir"], net.token(), patient)
    exam = min(exams, key=lambda e: e.performed or e.study_uid)  # the prior
    site_a, site_b = net.network.orthanc("site-a").client, net.network.orthanc("site-b").client
    for study_id in _lookup(site_b, exam.study_uid, "Study"):  # a previous test may have imported it
        site_b.delete(f"/studies/{study_id}").raise_for_status()
    port = free_port("127.0.0.1")
    net.network.orthanc("site-b").add_modality("fetchcli", "FETCHCLI", "127.0.0.1", port)
    env = {**os.environ, "DRIMBOX_TOKEN": net.token(), "DRIMBOX_LOCAL__AET": "FETCHCLI",
           "DRIMBOX_LOCAL__HOST": "127.0.0.1", "DRIMBOX_LOCAL__PORT": str(port),
           "DRIMBOX_STORAGE__DATA_DIR": str(tmp_path / "data"), "DRIMBOX_RETRIEVE__COMMITMENT_TIMEOUT_S": "30",
           "COLUMNS": "160"}
    command = [DRIMBOX, "fetch", "--config", net.node("site-b")["config"],
               "--ins", patient.ins or "", "--ins-oid", patient.ins_oid, "--study", exam.study_uid, "--import",
               "--local-id", "IPP-B-CLI-1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{exam.instance_count}/{exam.instance_count} instance(s)" in done.stdout
    assert f"import: {exam.instance_count} stored, {exam.instance_count} committed by the PACS" in done.stdout
    assert "MB/s" in done.stdout
    retrieved = tmp_path / "data" / "retrieved" / exam.kos_uid
    assert (retrieved / "retention.json").is_file()
    for series in exam.series:
        for instance in series.instances:
            (b_id,) = _lookup(site_b, instance.sop_instance_uid, "Instance")
            (a_id,) = _lookup(site_a, instance.sop_instance_uid, "Instance")
            in_b = dcmread(BytesIO(site_b.get(f"/instances/{b_id}/file").content))
            in_a = dcmread(BytesIO(site_a.get(f"/instances/{a_id}/file").content))
            assert in_b.SOPInstanceUID == in_a.SOPInstanceUID
            assert in_b.PatientID == "IPP-B-CLI-1" and in_b.OtherPatientIDsSequence[0].PatientID == patient.ins
            assert in_b.OriginalAttributesSequence[0].ReasonForTheAttributeModification == "COERCE"
            assert bytes(in_b.PixelData) == bytes(in_a.PixelData)


def test_fetch_unknown_patient_exits_non_zero(net: Net, tmp_path: Path) -> None:
    env = {**os.environ, "DRIMBOX_TOKEN": net.token(), "DRIMBOX_STORAGE__DATA_DIR": str(tmp_path / "data")}
    command = [DRIMBOX, "fetch", "--config", net.node("site-b")["config"],
               "--ins", make_patient(999).ins or "", "--ins-oid", "1.2.250.1.213.1.4.10"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no exam published" in done.stderr
