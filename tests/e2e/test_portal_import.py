"""Acceptance (issue 6) on the running nodes: a contextual call at site B for a patient whose exams
site A published lists them; retrieving and importing one from the portal puts instances with the
same UIDs and byte-identical pixel data into site B's Orthanc, confirmed by Storage Commitment."""

from __future__ import annotations

import re
import time
from io import BytesIO

import httpx
from pydicom import dcmread

from drimbox.devnet.orthanc import OrthancProcess
from tests.e2e.conftest import Net
from tests.e2e.test_web_pages import _form


def _pixel_data(orthanc: OrthancProcess, sop_uid: str) -> tuple[bytes, str]:
    found = orthanc.client.post("/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}})
    found.raise_for_status()
    [orthanc_id] = found.json()
    data = dcmread(BytesIO(orthanc.client.get(f"/instances/{orthanc_id}/file").content))
    return bytes(data.PixelData), str(data.PatientID)


def test_contextual_call_lists_and_import_reaches_site_b_pacs(net: Net) -> None:
    site_b = net.node("site-b")["base_url"]
    patient = net.screened_patient
    bearer = {"Authorization": f"Bearer {net.token()}"}
    with httpx.Client(base_url=site_b, timeout=30) as client:
        called = client.post("/contextual-call", data=_form(patient, PatientID="IPP-B-0042",
                                                             PatientIDIssuer="DEMO-SITE-B"))
        assert called.status_code == 303, called.text
        page_url = called.headers["location"]
        assert client.get(page_url).headers["location"].startswith("/auth/login?next=")  # no data before login
        page = client.get(page_url, headers=bearer)
        assert page.status_code == 200, page.text
        kos_uids = re.findall(r'data-kos="([^"]+)"', page.text)
        assert len(kos_uids) == 2  # the current and the prior screening mammography, newest first

        started = client.post(f"{page_url}/exams/{kos_uids[0]}/import", headers=bearer)
        assert started.status_code == 303, started.text
        job_url = started.headers["location"]
        deadline = time.monotonic() + 120
        while True:
            progress = client.get(job_url, headers=bearer)
            assert progress.status_code == 200, progress.text
            if re.search(r'class="state state-(done|incomplete|failed)"', progress.text) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert 'class="state state-done"' in progress.text, progress.text

    # What site B's PACS holds now is exactly what site A's holds, under site B's own IPP.
    # What site B's PACS holds now is exactly what site A's holds of that study, under site B's own IPP.
    orthanc_a, orthanc_b = net.network.orthanc("site-a"), net.network.orthanc("site-b")
    studies_a = orthanc_a.client.post("/tools/find", json={"Level": "Study", "Query": {}, "Expand": True}).json()
    mammographies = [st for st in studies_a if "Mammographie" in st["MainDicomTags"].get("StudyDescription", "")]
    study_a = max(mammographies, key=lambda st: st["MainDicomTags"]["StudyDate"])  # the newest exam was imported
    instances = orthanc_a.client.get(f"/studies/{study_a['ID']}/instances").json()
    sops = [instance["MainDicomTags"]["SOPInstanceUID"] for instance in instances]
    assert len(sops) == 4
    for sop in sops:
        pixels_b, patient_id_b = _pixel_data(orthanc_b, sop)
        pixels_a, _ = _pixel_data(orthanc_a, sop)
        assert pixels_b == pixels_a
        assert patient_id_b == "IPP-B-0042"

