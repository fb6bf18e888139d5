"""End to end through the node (issue #5, first acceptance bullet) with real Orthanc and the registry.

Each ANS HL7v2 sample (ORU and MDM of exams C, E, F, G1, G1 update, G2, I withdrawal), its elided
CDA replaced by a generated CI-SIS report for an exam whose images are in Orthanc, goes over MLLP to
a running :class:`~drimbox.node.Node` (SCP, MLLP listener, outbox worker, IOCM watcher). Then:
every message is ACKed AA; each exam has exactly one approved KOS, found by ITI-18 with the expected
metadata; ITI-43 returns a KOS referencing exactly the PACS's instances; the update replaced the
first version (RPLC); the withdrawal deprecated its exam's KOS; an IOCM rejection note C-STOREd to
the node's SCP republishes the exam without the rejected instance.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from drimbox.config import load_settings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import IssuedCert, TestCA
from drimbox.devnet.ports import free_port
from drimbox.node import Node
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox
from drimbox.publish.vihf import VihfIssuer, VihfProfile, VihfSubject
from drimbox.publish.xds import STATUS, Code, Signer, XdsClient, XdsEndpoints
from drimbox.reports import Practitioner
from drimbox.testdata import GeneratedStudy
from drimbox.testdata.ans_samples import ANS_PATIENT
from drimbox.testdata.exam import write_exam_study

from .crashnet import PATIENT_ID, ROOT, RegistryProcess, Ris, approved_kos, study_of
from .kos_reading import referenced_instances

NETWORK_URL = "https://127.0.0.2:18443"


def _hl7_samples() -> ModuleType:
    """The HL7 tests' sample helper (tests/hl7 is not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("hl7_samples", ROOT / "tests" / "hl7" / "hl7_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("hl7_samples", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


samples = _hl7_samples()


def spec_of(name: str) -> Any:
    """The report a sample carries. The ORU and the MDM of an exam carry the *same* report (a site
    uses one or the other): both get the MDM's keys (the ORU samples' OBR-18 is one number for
    every exam, which the node ignores: the accession comes from the CDA)."""
    return samples.report_spec(name.replace("-ORU", "-MDM"))


def message(name: str, control_id: str) -> bytes:
    return samples.sample_message(name, control_id=control_id, spec=spec_of(name))  # type: ignore[no-any-return]
ORDER = ["C-ORU", "C-MDM", "E-ORU", "E-MDM", "F-ORU", "F-MDM", "G1-ORU", "G1-MDM", "G1_MAJ-ORU", "G1_MAJ-MDM",
         "G2-ORU", "G2-MDM", "I-ORU", "I-MDM"]


@dataclass
class Site:
    node: Node
    registry: RegistryProcess
    cert: IssuedCert
    outbox_path: Path
    hl7_port: int
    scp: tuple[str, str, int]
    studies: dict[str, GeneratedStudy]


def _settings(tmp: Path, orthanc: OrthancProcess, registry: RegistryProcess, cert: IssuedCert) -> Path:
    import tomli_w

    config = {
        "name": "site-a",
        "local": {"aet": "DRIMBOX", "host": "127.0.0.2", "port": free_port("127.0.0.2")},
        "pacs": {"aet": orthanc.aet, "host": orthanc.dicom_host, "port": orthanc.dicom_port},
        "http": {"host": "127.0.0.2", "port": free_port("127.0.0.2"), "network_host": "127.0.0.2",
                 "network_port": free_port("127.0.0.2"), "public_network_url": NETWORK_URL},
        "hl7": {"host": "127.0.0.1", "port": free_port("127.0.0.1")},
        "registry": {"base_url": registry.url},
        "storage": {"data_dir": str(tmp / "node-data")},
        "auth": {"dev_mode": True},
        "publish": {"signing_cert_file": str(cert.cert_path), "signing_key_file": str(cert.key_path),
                    "organisation_id": "1750803447", "poll_s": 0.05, "iocm_poll_s": 0.2,
                    "retry_base_s": 0.2, "retry_max_s": 1.0},
    }
    path = tmp / "node.toml"
    path.write_text(tomli_w.dumps(config))
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, orthanc_a: OrthancProcess) -> Iterator[Site]:
    """A running node of site A over its Orthanc, the registry process, the exams' images in the PACS."""
    tmp = tmp_path_factory.mktemp("e2e")
    orthanc_a.reset()
    studies: dict[str, GeneratedStudy] = {}
    for name in ORDER:
        spec = spec_of(name)
        if spec.study_instance_uid not in studies:
            studies[spec.study_instance_uid] = write_exam_study(
                tmp / "images" / spec.study_instance_uid, study_uid=spec.study_instance_uid,
                accession=spec.accession_number, accession_issuer=spec.accession_issuer, patient=ANS_PATIENT)
    orthanc_a.upload([f for s in studies.values() for f in s.files])
    ca = TestCA.create(tmp / "pki")
    cert = ca.issue("site-a", hosts=["127.0.0.2"])
    registry = RegistryProcess(tmp, ca)
    settings = load_settings(_settings(tmp, orthanc_a, registry, cert))
    node = Node(settings)
    node.start()
    try:
        yield Site(node, registry, cert, tmp / "node-data" / "outbox.sqlite3", settings.hl7.port,
                   (settings.local.aet, settings.local.host, settings.local.port), studies)
    finally:
        node.stop()
        registry.stop()


def _idle(site: Site, timeout: float = 90.0) -> dict[JobState, int]:
    outbox = Outbox(site.outbox_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            counts = outbox.counts()
            if not any(counts.get(s) for s in (JobState.PENDING, JobState.IN_FLIGHT, JobState.FAILED)):
                return counts
            assert time.monotonic() < deadline, counts
            time.sleep(0.1)
    finally:
        outbox.close()


def _client(site: Site) -> tuple[XdsClient, VihfIssuer]:
    import httpx

    signer = Signer.from_files(site.cert.cert_path, site.cert.key_path)
    vihf = VihfIssuer(VihfProfile("1750803447", Code("SA07", "1.2.250.1.71.4.2.4"), "t", "t", "1", "t"), signer)
    url = site.registry.url
    return XdsClient(XdsEndpoints(f"{url}/xds/registry", f"{url}/xds/repository"), httpx.Client(timeout=30)), vihf


def _kos_bytes(site: Site, unique_id: str, repository: str) -> bytes:
    client, vihf = _client(site)
    assertion = vihf.issue(VihfSubject(Practitioner("801234560801", "BIDEAULT", "Jacques"),
                                       Code("10", "1.2.250.1.71.1.2.7", "Medecin"), None, PATIENT_ID),
                           now=datetime.now(UTC))
    (document,) = client.retrieve([(repository, unique_id)], assertion=assertion)
    return document.content


def test_ans_messages_are_acked_published_found_and_retrieved(site: Site) -> None:
    ris = Ris(site.hl7_port)
    # Exam I has only withdrawal messages in the data set: publish it first (the C-ORU sample, re-keyed).
    first_i = samples.sample_message("C-ORU", control_id="PRE-I", spec=spec_of("I-MDM"))
    ris.send(first_i)
    assert _idle(site)
    for number, name in enumerate(ORDER):
        ris.send(message(name, f"E2E{number:03d}"))  # asserts AA
    counts = _idle(site)
    assert set(counts) == {JobState.DONE}, counts

    approved = {study_of(e): e for e in approved_kos(site.registry.url, site.cert)}
    everything = approved_kos(site.registry.url, site.cert, (STATUS.APPROVED, STATUS.DEPRECATED))
    withdrawn = spec_of("I-MDM").study_instance_uid
    published = set(site.studies) - {withdrawn}
    assert set(approved) == published, "one approved KOS per exam, none for the withdrawn one"
    per_study = {s: [e for e in everything if study_of(e) == s] for s in site.studies}
    g1 = spec_of("G1-ORU").study_instance_uid
    assert sorted(e.status for e in per_study[g1]) == [STATUS.APPROVED, STATUS.DEPRECATED]  # RPLC by the update
    assert [e.status for e in per_study[withdrawn]] == [STATUS.DEPRECATED]
    for study_uid in published:
        assert len(per_study[study_uid]) == (2 if study_uid == g1 else 1), study_uid  # ORU + MDM: one publication

    for name in ("C-ORU", "E-ORU", "F-ORU", "G1_MAJ-ORU", "G2-ORU"):
        spec = spec_of(name)
        expected = samples.SAMPLES[name]
        entry = approved[spec.study_instance_uid]
        assert entry.patient_id == PATIENT_ID
        assert entry.mime_type == "application/dicom"
        codes_ = {f"{c.code}@{c.scheme}" for _s, c in entry.classifications}
        assert {"31@1.2.250.1.213.1.1.4.1", "IMG-KOS@1.2.250.1.213.1.1.4.12",
                "1.2.840.10008.5.1.4.1.1.88.59@1.2.840.10008.2.6.1", "N@2.16.840.1.113883.5.25",
                "MG@1.2.250.1.213.1.1.5.618"} <= codes_
        assert ("INVISIBLE_PATIENT@1.2.250.1.213.1.1.4.13" in codes_) == expected.invisible_to_patient
        assert ("INVISIBLE_REPRESENTANTS_LEGAUX@1.2.250.1.213.1.1.4.13" in codes_) == expected.invisible_to_legal
        assert f"{spec.study_instance_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID" in entry.reference_ids
        accession = f"{spec.accession_number}^^^&{spec.accession_issuer}&ISO^urn:ihe:iti:xds:2013:accession"
        assert accession in entry.reference_ids
        assert entry.slot("sourcePatientId") == "IPP101^^^&1.2.250.1.213.4.5.2.4&ISO^PI"
        assert len(entry.slot("creationTime") or "") == 14 and len(entry.slot("serviceStartTime") or "") == 14
        kos = _kos_bytes(site, entry.unique_id, entry.repository_unique_id or "")
        in_pacs = {i.sop_instance_uid for i in site.studies[spec.study_instance_uid].instances}
        assert referenced_instances(kos) == in_pacs
        assert dcmread(io.BytesIO(kos)).PatientID == ANS_PATIENT.ins


def test_iocm_rejection_note_to_the_scp_republishes_without_the_instance(
    site: Site, tmp_path: Path, orthanc_a: OrthancProcess
) -> None:
    study_uid = spec_of("G2-ORU").study_instance_uid
    study = site.studies[study_uid]
    before = {study_of(e): e for e in approved_kos(site.registry.url, site.cert)}[study_uid]
    rejected = study.instances[0]
    evidence = [dcmread(rejected.path, stop_before_pixels=True)]
    note = KeyObjectSelectionDocument(
        evidence=evidence,
        content=KeyObjectSelection(document_title=codes.DCM.RejectedForQualityReasons, referenced_objects=evidence),
        series_instance_uid=generate_uid(), series_number=99, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="PACS_A")
    path = tmp_path / "note.dcm"
    note.save_as(path, enforce_file_format=True)
    aet, host, port = site.scp
    subprocess.run(["storescu", "-aet", "PACS_A", "-aec", aet, host, str(port), str(path)], check=True, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        after = {study_of(e): e for e in approved_kos(site.registry.url, site.cert)}.get(study_uid)
        if after is not None and after.unique_id != before.unique_id:
            break
        assert time.monotonic() < deadline, "no republication after the rejection note"
        time.sleep(0.2)
    kos = _kos_bytes(site, after.unique_id, after.repository_unique_id or "")
    assert referenced_instances(kos) == {i.sop_instance_uid for i in study.instances} - {rejected.sop_instance_uid}
    assert _idle(site)
