"""Graceful shutdown (issue 10 acceptance): SIGTERM to ``drimbox serve`` during a retrieval and during
a publication leaves no half-written cache entry and loses no outbox job.

The node is the real ``drimbox serve`` process over the session's real Orthanc (REST fast path) and
the real registry (``drimbox registry serve``); the SIGTERM is sent to it like systemd or a container
engine would.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
import tomli_w

from dicomweb_gateway.backend import RetrieveTarget
from dicomweb_gateway.backends.filesystem import FileStore
from drimbox.config import LocalAE
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.pki import IssuedCert, TestCA
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, tail
from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox
from drimbox.testdata import make_patient
from drimbox.testdata.tomographic import write_ct_study
from tests.publish.crashnet import ROOT, RegistryProcess, Ris, approved_kos, make_exams, study_of

GRACE_S = 2


@dataclass
class ServedNode:
    """``drimbox serve`` with its settings file; started and SIGTERMed by the tests."""

    workdir: Path
    config: Path
    http_port: int
    hl7_port: int
    registry_url: str
    cert: IssuedCert
    child: ChildProcess | None = None
    runs: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "node-data"

    def start(self) -> None:
        script = Path(sys.executable).with_name("drimbox")
        self.child = ChildProcess([str(script), "serve", "--config", str(self.config)],
                                  log_path=self.workdir / f"node-{self.runs}.log", cwd=ROOT,
                                  env={"PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT),
                                       "PYTHONFAULTHANDLER": "1"})  # SIGABRT dumps every thread
        self.runs += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.child.poll() is not None:
                raise RuntimeError(f"node exited {self.child.poll()}: {tail(self.child.log_path)}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(tail(self.child.log_path))

    def sigterm_and_wait(self, timeout: float) -> tuple[int, float]:
        """SIGTERM the node (the process only, as an init system does); its exit status and how long it took."""
        assert self.child is not None
        started = time.monotonic()
        os.kill(self.child.pid, signal.SIGTERM)
        while (status := self.child.poll()) is None:
            if time.monotonic() - started > timeout:
                os.kill(self.child.pid, signal.SIGABRT)  # where it hangs, into the log
                time.sleep(1)
                raise AssertionError(f"still running {timeout} s after SIGTERM:\n{tail(self.child.log_path)}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        self.child.wait(1)
        self.child = None
        return status, elapsed

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


@dataclass
class _Shared:
    registry: RegistryProcess
    cert: IssuedCert


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Shared]:
    """One registry (and CA) for this module's nodes; each test has its own node and data."""
    workdir = tmp_path_factory.mktemp("shutdown")
    ca = TestCA.create(workdir / "pki")
    registry = RegistryProcess(workdir, ca)
    try:
        yield _Shared(registry, ca.issue("site-a", hosts=["127.0.0.1"]))
    finally:
        registry.stop()


@pytest.fixture()
def node(tmp_path: Path, shared: _Shared, orthanc_a: OrthancProcess, node_ae: LocalAE) -> Iterator[ServedNode]:
    """``drimbox serve`` over the session's Orthanc (studies of these tests have their own UIDs)."""
    cert, registry = shared.cert, shared.registry
    http_port, hl7_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    settings = {
        "name": "site-a",
        "local": {"aet": node_ae.aet, "host": node_ae.host, "port": node_ae.port},
        "pacs": {"aet": orthanc_a.aet, "host": orthanc_a.dicom_host, "port": orthanc_a.dicom_port,
                 "rest_url": orthanc_a.http_url},
        "http": {"host": "127.0.0.1", "port": http_port},
        "auth": {"dev_mode": True},
        "hl7": {"host": "127.0.0.1", "port": hl7_port, "shutdown_grace_s": 1.0},
        "registry": {"base_url": registry.url},
        "storage": {"data_dir": str(tmp_path / "node-data")},
        "publish": {"signing_cert_file": str(cert.cert_path), "signing_key_file": str(cert.key_path),
                    "organisation_id": "101235555", "workers": 2, "poll_s": 0.05, "retry_base_s": 0.2,
                    "retry_max_s": 1.0},
        "operations": {"shutdown_grace_s": GRACE_S},
    }
    config = tmp_path / "node.toml"
    config.write_text(tomli_w.dumps(settings))
    served = ServedNode(tmp_path, config, http_port, hl7_port, registry.url, cert)
    try:
        yield served
    finally:
        served.stop()


def _original_bytes(files: list[Path]) -> dict[str, bytes]:
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f.read_bytes() for f in files}


def _cached(cache_dir: Path, study_uid: str) -> tuple[dict[str, bytes], bool]:
    store = FileStore(cache_dir)
    try:
        target = RetrieveTarget(study_uid=study_uid)
        instances = {i.sop_instance_uid: i.path.read_bytes() for i in store.instances(target)}
        return instances, store.completeness(target) is not None
    finally:
        store.close()


def test_sigterm_during_a_retrieval_leaves_no_half_written_cache_entry(
    node: ServedNode, orthanc_a: OrthancProcess, tmp_path: Path
) -> None:
    study = write_ct_study(tmp_path / "ct", make_patient(7, sex="M", with_ins=True), series=2, slices_per_series=20,
                           seed=1007)
    orthanc_a.upload(study.files)
    originals = _original_bytes(list(study.files))
    node.start()
    url = f"{node.base_url}/dicom-web/studies/{study.study_instance_uid}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    received = 0
    complete = False
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=accept) as response:
        assert response.status_code == 200
        chunks = response.iter_raw(65536)
        received += len(next(chunks))  # the retrieval is under way: the first part is coming in
        # A slow reader: the response cannot finish within the grace, the server must cut it cleanly.
        status, _ = node.sigterm_and_wait(timeout=GRACE_S + 20)
        try:
            for chunk in chunks:
                received += len(chunk)
            complete = True
        except httpx.HTTPError:
            pass  # cut: the connection was closed, no final boundary
    assert status == 0, "the node did not exit cleanly on SIGTERM"
    total = sum(len(b) for b in originals.values())
    assert complete or received < total
    # No half-written cache entry: every instance the cache indexes is byte for byte the PACS's copy,
    # and the study is not marked complete unless it is.
    cached, marked_complete = _cached(node.data_dir / "dicomweb-cache", study.study_instance_uid)
    for sop, data in cached.items():
        assert data == originals[sop], f"cached {sop} differs from the PACS's copy"
    if marked_complete:
        assert set(cached) == set(originals)
    leftovers = [p for p in (node.data_dir / "dicomweb-cache").rglob("*")
                 if p.is_file() and p.suffix in (".part", ".tmp")]
    assert not leftovers, leftovers

    # The cache index opened above recovered as a restarted node's would; the cut study is not served
    # from it as complete, so the next request goes to the PACS again.


def test_sigterm_during_publications_loses_no_outbox_job(node: ServedNode, orthanc_a: OrthancProcess,
                                                         tmp_path: Path) -> None:
    exams = make_exams(tmp_path / "exams", orthanc_a, 4, first=9100)
    node.start()
    ris = Ris(node.hl7_port)
    for exam in exams:
        ris.send(exam.message())  # AA: the job is committed
    outbox_path = node.data_dir / "outbox.sqlite3"
    outbox = Outbox(outbox_path)
    try:
        deadline = time.monotonic() + 10
        while not (counts := outbox.counts()).get(JobState.IN_FLIGHT) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        outbox.close()
    # SIGTERM while a worker is publishing (claimed, between its C-FIND walk and the registry's answer).
    assert counts.get(JobState.IN_FLIGHT), f"no publication in progress to interrupt: {counts}"
    status, _ = node.sigterm_and_wait(timeout=60)
    assert status == 0
    outbox = Outbox(outbox_path)
    try:
        jobs = outbox.jobs()
    finally:
        outbox.close()
    assert {j.study_instance_uid for j in jobs} == {e.study_uid for e in exams}, "an acknowledged report was lost"
    assert all(j.state in (JobState.DONE, JobState.PENDING, JobState.IN_FLIGHT, JobState.FAILED) for j in jobs)

    node.start()  # the restart finishes what the SIGTERM left
    deadline = time.monotonic() + 120
    while True:
        outbox = Outbox(outbox_path)
        try:
            counts = outbox.counts()
        finally:
            outbox.close()
        if counts == {JobState.DONE: len(exams)} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts == {JobState.DONE: len(exams)}
    per_study: dict[str, int] = {}
    for entry in approved_kos(node.registry_url, node.cert):
        per_study[study_of(entry)] = per_study.get(study_of(entry), 0) + 1
    assert per_study == {e.study_uid: 1 for e in exams}
