"""Background import jobs (:mod:`drimbox.retrieve.jobs`): a retrieval that outlives its user's token.

The retriever here is an in-memory implementation of the jobs' :class:`ExamRetriever` protocol (the
real one is exercised against real nodes in ``tests/e2e``): it refuses the user's token with 401 after
some instances, as a source does once a long transfer has outlived the token.
"""

from __future__ import annotations

import time
from pathlib import Path

from drimbox.errors import SourceRefused
from drimbox.retrieve.jobs import ImportJob, ImportJobs
from drimbox.retrieve.model import Actor, Exam, InstanceRef, RetrievalProgress, RetrievalReport, SeriesRef
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
