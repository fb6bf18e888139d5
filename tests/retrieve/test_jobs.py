"""Background import jobs (:mod:`drimbox.retrieve.jobs`): a retrieval that outlives its user's token.

The retriever here is an in-memory implementation of the jobs' :class:`ExamRetriever` protocol (the
real one is exercised against real nodes in ``tests/e2e``): it refuses the user's token with 401 after
some instances, as a source does once a long transfer has outlived the token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from drimbox.errors import SourceRefused
from drimbox.retrieve.jobs import ImportJob, ImportJobs
from drimbox.retrieve.model import (
    Actor,
    Exam,
    InstanceRef,
    PatientTraits,
    RetrievalProgress,
    RetrievalReport,
    SeriesRef,
)
from drimbox.trust.audit import AuditStore

USER = Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name=None, token="user")
NODE = Actor(subject="node:site-b for rpps:10101010101", rpps=None, role="node", display_name="site-b", token="node")
SERIES = SeriesRef(series_uid="1.2.3.1", retrieve_url="https://127.0.0.2/dicom-web/studies/1.2.3/series/1.2.3.1",
                   instances=tuple(InstanceRef("1.2.840.10008.5.1.4.1.1.1.2", f"1.2.3.1.{n}") for n in range(4)))
EXAM = Exam(kos_uid="1.2.3.9", entry_uuid="urn:uuid:x", repository_unique_id="1.2", study_uid="1.2.3",
            accession_number="A1", performed=None, modalities=("MG",), description="", body_part="BREAST",
            source_site="site-a", series=(SERIES,))


class ExpiringSource:
    """Sends two instances for the user's token, then refuses it (401); everything for the node's."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def retrieve(self, exam: Exam, actor: Actor, directory: Path, *,
                 progress: RetrievalProgress | None = None) -> RetrievalReport:
        self.calls.append(actor.token)
        directory.mkdir(parents=True, exist_ok=True)
        wanted = [i.sop_instance_uid for i in SERIES.instances]
        for sop in wanted[:2] if actor.token == "user" else wanted:
            (directory / f"{sop}.dcm").write_bytes(b"DICM")
        if actor.token == "user":
            raise SourceRefused("token expired", status=401)
        report = RetrievalReport(exam=exam, directory=directory)
        report.received = {sop: directory / f"{sop}.dcm" for sop in wanted}
        report.missing = ()
        return report


class Grants:
    """The consumer's :class:`Deferral`: whether the source granted the KOS, and the node's actor."""

    def __init__(self, granted: bool) -> None:
        self.granted = granted
        self.asked: list[str] = []

    def prepare(self, exam: Exam, actor: Actor) -> bool:
        self.asked.append(actor.token)
        return self.granted

    def actor(self, *, on_behalf_of: str | None = None) -> Actor:
        assert on_behalf_of == USER.subject
        return NODE


def _finished(jobs: ImportJobs, job_id: str) -> ImportJob:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        assert job is not None
        if job.done:
            return job
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_retrieval_resumes_with_the_node_credential_once_the_users_token_is_refused(tmp_path: Path) -> None:
    audit, source, grants = AuditStore(tmp_path / "audit.sqlite"), ExpiringSource(), Grants(granted=True)
    jobs = ImportJobs(retriever=source, importer=None, work_dir=tmp_path / "work", audit=audit, deferral=grants)
    job = _finished(jobs, jobs.start_import(EXAM, None, USER, import_into_pacs=False))
    jobs.close()
    assert job.state == "done", job.problems
    assert grants.asked == ["user"]  # asked when queued, with the user's token
    assert source.calls == ["user", "node"]
    assert job.received == 4 and any("node's credential" in p for p in job.problems)
    [resumed] = audit.events(action="retrieve.resumed")
    assert resumed.subject == NODE.subject and resumed.kos_uid == EXAM.kos_uid


def test_without_a_grant_the_refusal_stands(tmp_path: Path) -> None:
    audit, source = AuditStore(tmp_path / "audit.sqlite"), ExpiringSource()
    jobs = ImportJobs(retriever=source, importer=None, work_dir=tmp_path / "work", audit=audit,
                      deferral=Grants(granted=False))
    job = _finished(jobs, jobs.start_import(EXAM, None, USER, import_into_pacs=False))
    jobs.close()
    assert job.state == "failed" and source.calls == ["user"]
    assert any("token expired" in p for p in job.problems)
    assert list(audit.events(action="retrieve.resumed")) == []


class Blocked:
    """A source that never answers in time: the node stops (or dies) while the job is queued behind it."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def retrieve(self, exam: Exam, actor: Actor, directory: Path, *,
                 progress: RetrievalProgress | None = None) -> RetrievalReport:
        self.release.wait(10)
        raise SourceRefused("stopped", status=503)


TRAITS = PatientTraits(ins="283052A123456", ins_oid="1.2.250.1.213.1.4.10", birth_name="DUPONT",
                       first_given_name="MARIE", birth_date=date(1962, 3, 4), sex="F", birth_place="75056")


def test_a_granted_job_left_by_a_stop_is_resumed_with_the_node_credential(tmp_path: Path) -> None:
    audit, work = AuditStore(tmp_path / "audit.sqlite"), tmp_path / "work"
    blocked = Blocked()
    # One worker busy elsewhere: the import stays queued when the node stops (cancelled, its record kept).
    first = ImportJobs(retriever=blocked, importer=None, work_dir=work, audit=audit, workers=1,
                       deferral=Grants(granted=True))
    first.start_import(replace(EXAM, kos_uid="1.2.3.8"), None, USER, import_into_pacs=False)
    first.start_import(EXAM, TRAITS, USER, import_into_pacs=False)
    record = work / EXAM.kos_uid / ".job.json"
    assert record.is_file() and b"user" not in record.read_bytes().replace(b"rpps:", b"")  # never the token
    stopping = threading.Thread(target=first.close)  # cancels the queued job at once, then waits
    stopping.start()
    time.sleep(0.3)
    blocked.release.set()
    stopping.join(10)
    assert record.is_file()
    source = ExpiringSource()
    again = ImportJobs(retriever=source, importer=None, work_dir=work, audit=audit, deferral=Grants(granted=True))
    [job_id] = again.resume_interrupted()
    job = _finished(again, job_id)
    again.close()
    assert job.state == "done" and job.exam == EXAM and source.calls == ["node"]
    assert not record.exists()
    assert again.resume_interrupted() == []


def test_an_ungranted_job_left_by_a_stop_is_reported_not_resumed(tmp_path: Path) -> None:
    audit, work = AuditStore(tmp_path / "audit.sqlite"), tmp_path / "work"
    (work / EXAM.kos_uid).mkdir(parents=True)
    jobs = ImportJobs(retriever=ExpiringSource(), importer=None, work_dir=work, audit=audit,
                      deferral=Grants(granted=False))
    jobs._record(ImportJob("x", EXAM, USER.subject, True), TRAITS)  # as start_import leaves it
    assert jobs.resume_interrupted() == []
    jobs.close()
    [event] = audit.events(action="retrieve.interrupted")
    assert (event.kos_uid, event.patient_ins, event.subject) == (EXAM.kos_uid, TRAITS.ins, USER.subject)
    assert not (work / EXAM.kos_uid / ".job.json").exists()
