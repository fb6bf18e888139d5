"""A small network for the crash-safety tests: the registry and the publishing node as processes.

The registry is ``drimbox registry serve`` (SQLite); the node is :mod:`tests.publish.node_child`;
the PACS is the session's real Orthanc. :class:`Ris` plays the RIS: it sends a report over MLLP
and, like a real RIS, sends it again until it gets an ACK.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import tomli_w

from drimbox.config import LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import IssuedCert, TestCA
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, tail
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox
from drimbox.publish.submission import KOS_TYPE
from drimbox.publish.vihf import VihfIssuer, VihfProfile, VihfSubject
from drimbox.publish.xds import (
    STATUS,
    Code,
    FindDocumentsQuery,
    RegistryDocument,
    Signer,
    XdsClient,
    XdsEndpoints,
)
from drimbox.reports import Practitioner
from drimbox.testdata import GeneratedStudy
from drimbox.testdata.ans_samples import ANS_PATIENT, fill_sample
from drimbox.testdata.cda import ReportSpec, make_report_cda
from drimbox.testdata.exam import write_exam_study

ROOT = Path(__file__).resolve().parents[2]
HL7_DIR = ROOT.parent / "shared" / "drim-m-data" / "Referencement_DRIMBox" / "Jeux_de_donnees" / "HL7v2"
ORU_NEW = HL7_DIR / "Examen_G" / "CR_G1-ORU.elided.hl7"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
PATIENT_ID = f"{ANS_PATIENT.ins}^^^&{ANS_PATIENT.ins_oid}&ISO^NH"


def _drimbox() -> list[str]:
    script = Path(sys.executable).with_name("drimbox")
    return [str(script)] if script.exists() else [sys.executable, "-m", "drimbox"]


def _wait_http(url: str, child: ChildProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{child.argv} exited {child.poll()}: {tail(child.log_path)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


@dataclass
class Exam:
    """One exam: its keys, its images (in the PACS) and its report messages."""

    index: int
    study: GeneratedStudy

    @property
    def study_uid(self) -> str:
        return self.study.study_instance_uid

    def message(self, version: int = 1) -> bytes:
        """The ANS ORU sample carrying this exam's report (a new version keeps the set id)."""
        spec = ReportSpec(patient=ANS_PATIENT, study_instance_uid=self.study_uid,
                          accession_number=self.study.accession_number,
                          document_id=f"1.2.826.0.1.3680043.10.1099.{self.index}.{version}",
                          set_id=f"SET-{self.index:06d}", version_number=version,
                          parent_document_id=f"1.2.826.0.1.3680043.10.1099.{self.index}.{version - 1}"
                          if version > 1 else None, modality="CT")
        return fill_sample(ORU_NEW.read_bytes(), make_report_cda(spec), control_id=f"C{self.index}V{version}")


def make_exams(dest: Path, orthanc: OrthancProcess, count: int, first: int = 0) -> list[Exam]:
    """``count`` small CT exams of the ANS test patient, stored in Orthanc."""
    exams = []
    files: list[Path] = []
    for index in range(first, first + count):
        study = write_exam_study(dest / f"exam{index}", study_uid=f"1.2.826.0.1.3680043.10.1098.{index}",
                                 accession=f"CRASH{index:06d}", patient=ANS_PATIENT, modality="CT")
        exams.append(Exam(index, study))
        files.extend(study.files)
    orthanc.upload(files)
    return exams


class NodeProcess:
    """The publishing node child."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.child = ChildProcess(argv, log_path=log, cwd=ROOT, env=env)
        self.log = log

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY" in tail(self.log, 400):
                return
            if self.child.poll() is not None:
                raise RuntimeError(f"node exited {self.child.poll()}:\n{tail(self.log)}")
            time.sleep(0.05)
        raise TimeoutError(f"node not ready:\n{tail(self.log)}")


class RegistryProcess:
    """``drimbox registry serve`` on loopback, trusting ``ca`` for VIHF and DSG signatures."""

    def __init__(self, workdir: Path, ca: TestCA) -> None:
        self.port = free_port("127.0.0.1")
        self.child = ChildProcess(
            [*_drimbox(), "registry", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(workdir / "registry"), "--trusted-ca-file", str(ca.cert_path)],
            log_path=workdir / "registry.log", cwd=workdir)
        _wait_http(f"{self.url}/healthz", self.child)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.child.stop()


def approved_kos(registry_url: str, cert: IssuedCert, statuses: tuple[str, ...] = (STATUS.APPROVED,)
                 ) -> list[RegistryDocument]:
    """ITI-18 FindDocuments of the ANS patient's KOS entries."""
    signer = Signer.from_files(cert.cert_path, cert.key_path)
    vihf = VihfIssuer(VihfProfile("101235555", Code("SA07", "1.2.250.1.71.4.2.4"), "t", "t", "1", "t"), signer)
    assertion = vihf.issue(VihfSubject(Practitioner("801234560801", "BIDEAULT", "Jacques"),
                                       Code("10", "1.2.250.1.71.1.2.7", "Medecin"), None, PATIENT_ID),
                           now=datetime.now(UTC))
    with httpx.Client(timeout=30) as http:
        client = XdsClient(XdsEndpoints(f"{registry_url}/xds/registry", f"{registry_url}/xds/repository"), http)
        return client.find_documents(FindDocumentsQuery(PATIENT_ID, statuses=statuses, type_codes=(KOS_TYPE,)),
                                     assertion=assertion)


def study_of(entry: RegistryDocument) -> str:
    """The Study Instance UID in an entry's referenceIdList."""
    studies = [r.split("^")[0] for r in entry.reference_ids if r.endswith("studyInstanceUID")]
    return studies[0] if studies else "?"


class CrashNet:
    """Registry process + node processes sharing one outbox file, on the test's Orthanc."""

    def __init__(self, workdir: Path, orthanc: OrthancProcess, node_ae: LocalAE) -> None:
        self.workdir = workdir
        self.orthanc = orthanc
        self.node_ae = node_ae
        self.ca = TestCA.create(workdir / "pki")
        self.cert: IssuedCert = self.ca.issue("site-a", hosts=["127.0.0.1"])
        self.hl7_port = free_port("127.0.0.1")
        self.registry = RegistryProcess(workdir, self.ca)
        self.config = self._write_config()
        self.node: NodeProcess | None = None
        self.restarts = 0

    @property
    def registry_url(self) -> str:
        return self.registry.url

    @property
    def outbox_path(self) -> Path:
        return self.workdir / "node-data" / "outbox.sqlite3"

    def _write_config(self) -> Path:
        settings = {
            "name": "site-a",
            "local": {"aet": self.node_ae.aet, "host": self.node_ae.host, "port": self.node_ae.port},
            "pacs": {"aet": self.orthanc.aet, "host": self.orthanc.dicom_host, "port": self.orthanc.dicom_port},
            "hl7": {"host": "127.0.0.1", "port": self.hl7_port, "shutdown_grace_s": 1.0},
            "registry": {"base_url": self.registry_url},
            "storage": {"data_dir": str(self.workdir / "node-data")},
            "publish": {
                "signing_cert_file": str(self.cert.cert_path), "signing_key_file": str(self.cert.key_path),
                "organisation_id": "101235555", "workers": 2, "poll_s": 0.05, "retry_base_s": 0.2,
                "retry_max_s": 1.0, "lease_s": 60.0,
            },
        }
        path = self.workdir / "node.toml"
        path.write_text(tomli_w.dumps(settings))
        return path

    def start_node(self, crash_point: str | None = None, crash_after: int = 1) -> NodeProcess:
        env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        if crash_point:
            env |= {"DRIMBOX_PUBLISH__CRASH_POINT": crash_point, "DRIMBOX_PUBLISH__CRASH_AFTER": str(crash_after)}
        node = NodeProcess([sys.executable, "-m", "tests.publish.node_child", str(self.config)],
                           self.workdir / f"node-{self.restarts}.log", env)
        self.restarts += 1
        node.wait_ready()
        self.node = node
        return node

    def kill_node(self) -> None:
        """SIGKILL the node (no clean-up of any kind)."""
        if self.node is not None:
            try:
                os.killpg(self.node.child.pid, 9)
            except ProcessLookupError:
                pass
            self.node.child.wait(5)
            self.node = None

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the node to die by itself (a crash point); its exit status."""
        assert self.node is not None
        deadline = time.monotonic() + timeout
        while (status := self.node.child.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(tail(self.node.log))
            time.sleep(0.02)
        self.node.child.wait(1)
        self.node = None
        return status

    def stop(self) -> None:
        if self.node is not None:
            self.node.child.stop()
        self.registry.stop()

    # -- observing -----------------------------------------------------------------------------

    def outbox_idle(self, timeout: float = 120.0) -> dict[JobState, int]:
        """Wait until no job is pending, in flight or failed; the job counts per state."""
        outbox = Outbox(self.outbox_path)
        try:
            deadline = time.monotonic() + timeout
            while True:
                counts = outbox.counts()
                if not any(counts.get(s) for s in (JobState.PENDING, JobState.IN_FLIGHT, JobState.FAILED)):
                    return counts
                if time.monotonic() > deadline:
                    raise TimeoutError(f"outbox not idle: {counts}")
                time.sleep(0.1)
        finally:
            outbox.close()

    def steps(self, job_id: int) -> list[str]:
        outbox = Outbox(self.outbox_path)
        try:
            return [f"{s.step}: {s.outcome}" for s in outbox.steps(job_id)]
        finally:
            outbox.close()

    def approved_kos_per_study(self) -> Counter[str]:
        """ITI-18 FindDocuments (the ANS patient, approved, IMG-KOS): how many KOS per Study UID."""
        return Counter(study_of(entry) for entry in approved_kos(self.registry_url, self.cert))


class Ris:
    """Sends report messages over MLLP, again and again until each is acknowledged (AA)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sends = 0

    def send(self, message: bytes, timeout: float = 120.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sends += 1
            answer = self._try(message)
            if answer is not None:
                msa = next(line for line in answer.split(b"\r") if line.startswith(b"MSA"))
                code = msa.split(b"|")[1]
                assert code == b"AA", answer
                return answer
            time.sleep(0.1)
        raise TimeoutError("no ACK")

    def _try(self, message: bytes) -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=15) as sock:
                sock.sendall(VT + message + FS + CR)
                buffer = b""
                while FS + CR not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None  # the node died before answering
                    buffer += chunk
                return buffer.split(FS + CR, 1)[0][1:]
        except OSError:
            return None


def assert_one_kos_per_exam(net: CrashNet, exams: list[Exam]) -> None:
    """The acceptance: exactly one approved KOS per acknowledged report, nothing else."""
    counts = net.approved_kos_per_study()
    wrong = {e.study_uid: counts.get(e.study_uid, 0) for e in exams if counts.get(e.study_uid, 0) != 1}
    assert not wrong, f"studies without exactly one approved KOS: {wrong}"
    assert set(counts) == {e.study_uid for e in exams}
