"""Background consumer jobs: retrieve an exam from its source node (F7), then import it into the
local PACS (F8), with progress a page or the API can follow.

A job runs in a small worker pool (several users may import at once, but a node must not saturate
its link or its PACS); its state is kept in memory (the last ``keep`` jobs) and every outcome is
audited. The retrieval writes under ``<work_dir>/<kos_uid>/``, so a job asked again after a failure
or a restart resumes where the last one stopped (the retriever skips instances already on disk).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import structlog
from pydantic import TypeAdapter, ValidationError

from drimbox.errors import DrimboxError, SourceRefused
from drimbox.retrieve.model import Actor, Exam, PatientTraits, RetrievalProgress, RetrievalReport, SeriesRef
from drimbox.trust.audit import AuditEvent, AuditTrail

__all__ = ["Deferral", "ExamImporter", "ExamRetriever", "ImportJob", "ImportJobs", "JobState", "count_of"]

log = structlog.get_logger(__name__)

JobState = Literal["queued", "retrieving", "importing", "done", "incomplete", "failed"]


class ExamRetriever(Protocol):
    """What a job needs of :class:`drimbox.retrieve.transfer.StudyRetriever`."""

    def retrieve(self, exam: Exam, actor: Actor, directory: Path, *, progress: RetrievalProgress | None = None
                 ) -> RetrievalReport: ...


class ImportOutcome(Protocol):
    """What a job reads of the importer's report."""

    @property
    def stored(self) -> object: ...

    @property
    def committed(self) -> object: ...


class ExamImporter(Protocol):
    """What a job needs of :class:`drimbox.retrieve.importer.StudyImporter`."""

    def import_study(self, files: Sequence[Path], traits: PatientTraits | None) -> ImportOutcome: ...


def count_of(value: object) -> int:
    """The importer reports counts or collections of UIDs; pages and commands show numbers."""
    if isinstance(value, int):
        return value
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return 0


@dataclass
class ImportJob:
    """One retrieve-and-import of one exam."""

    id: str
    exam: Exam
    subject: str
    import_into_pacs: bool
    state: JobState = "queued"
    expected: int = 0
    received: int = 0
    bytes: int = 0
    imported: int = 0
    committed: int = 0
    problems: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    finished: float | None = None
    directory: Path | None = None
    granted: bool = False
    """Whether the source granted this node the KOS (the job may go on after the user's token expires)."""

    @property
    def done(self) -> bool:
        return self.state in ("done", "incomplete", "failed")


class _Progress:
    """Counts instances as the retriever reports them (called from its worker threads)."""

    def __init__(self, job: ImportJob, lock: threading.Lock) -> None:
        self._job, self._lock = job, lock

    def series_started(self, series: SeriesRef) -> None:
        pass

    def instance_received(self, series: SeriesRef, sop_instance_uid: str, size: int) -> None:
        with self._lock:
            self._job.received += 1
            self._job.bytes += size

    def series_finished(self, series: SeriesRef, error: str | None) -> None:
        if error:
            with self._lock:
                self._job.problems.append(f"series {series.series_uid}: {error}")


class Deferral(Protocol):
    """How a job outlives its user's token (:class:`drimbox.trust.node_credential.DeferredAccess`)."""

    def prepare(self, exam: Exam, actor: Actor) -> bool:
        """Ask the source, while the user's token is valid, for a grant to this node; whether it gave one."""
        ...

    def actor(self, *, on_behalf_of: str | None = None) -> Actor:
        """The node acting on its own credential."""
        ...


@dataclass(frozen=True, slots=True)
class _Pending:
    """What a restarted node needs to resume a job (never the user's token)."""

    exam: Exam
    traits: PatientTraits | None
    subject: str
    import_into_pacs: bool
    granted: bool


_PENDING = TypeAdapter(_Pending)
_RECORD = ".job.json"
"""Next to the retrieved instances (``<work_dir>/<kos_uid>/``): hidden, so exports and scans skip it."""


class ImportJobs:
    """Retrieve-then-import jobs, run in the background and looked up by id.

    With a ``deferral``, a job asks the source for a KOS grant when it is queued (the user is there);
    a retrieval the source then refuses with 401 (the user's token expired during a long transfer) is
    resumed — the instances already received are kept — with the node's own credential under that grant.

    A job is recorded on disk until it ends (``<work_dir>/<kos_uid>/.job.json``); after a stop or a crash,
    :meth:`resume_interrupted` takes up the granted ones with the node's credential, and reports the others.
    """

    def __init__(self, *, retriever: ExamRetriever, importer: ExamImporter | None, work_dir: Path,
                 audit: AuditTrail, workers: int = 2, keep: int = 200,
                 on_retrieved: Callable[[Exam, Path], None] = lambda exam, path: None,
                 deferral: Deferral | None = None) -> None:
        self._deferral = deferral
        self._retriever = retriever
        self._importer = importer
        self._work_dir = work_dir
        self._audit = audit
        self._keep = keep
        self._on_retrieved = on_retrieved
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import")

    def start_import(self, exam: Exam, traits: PatientTraits | None, actor: Actor, *,
                     import_into_pacs: bool = True) -> str:
        """Queue the retrieval (and import) of ``exam`` for ``actor``; return the job id at once."""
        job = ImportJob(uuid.uuid4().hex, exam, actor.subject, import_into_pacs, expected=exam.instance_count)
        job.granted = self._deferral is not None and self._deferral.prepare(exam, actor)
        self._record(job, traits)
        self._submit(job, traits, actor)
        return job.id

    def resume_interrupted(self) -> list[str]:
        """Take up the jobs a previous run left unfinished; the ids of those resumed.

        A granted job goes on with the node's own credential (the retrieval keeps what it had received);
        one without a grant cannot (its user's token is gone): it is audited as interrupted and dropped.
        """
        resumed = []
        for path in sorted(self._work_dir.glob(f"*/{_RECORD}")):
            try:
                pending = _PENDING.validate_json(path.read_bytes())
            except (OSError, ValidationError) as exc:
                log.error("unreadable job record", path=str(path), error=str(exc))
                continue
            exam = pending.exam
            if not pending.granted or self._deferral is None:
                path.unlink(missing_ok=True)
                self._audit.record(AuditEvent(action="retrieve.interrupted", outcome="failure",
                                              subject=pending.subject, study_uid=exam.study_uid,
                                              kos_uid=exam.kos_uid, patient_ins=pending.traits.ins
                                              if pending.traits else None,
                                              detail="stopped before it ended; no KOS grant to resume it"))
                continue
            job = ImportJob(uuid.uuid4().hex, exam, pending.subject, pending.import_into_pacs,
                            expected=exam.instance_count, granted=True)
            job.problems.append("resumed after a restart with the node's credential")
            self._submit(job, pending.traits, self._deferral.actor(on_behalf_of=pending.subject))
            resumed.append(job.id)
        return resumed

    def _submit(self, job: ImportJob, traits: PatientTraits | None, actor: Actor) -> None:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, traits, actor)

    def _record(self, job: ImportJob, traits: PatientTraits | None) -> None:
        """Write the job's record atomically (what :meth:`resume_interrupted` reads)."""
        directory = self.directory_of(job.exam)
        directory.mkdir(parents=True, exist_ok=True)
        pending = _Pending(job.exam, traits, job.subject, job.import_into_pacs, job.granted)
        temporary = directory / f"{_RECORD}.tmp"
        temporary.write_bytes(_PENDING.dump_json(pending))
        temporary.replace(directory / _RECORD)

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def directory_of(self, exam: Exam) -> Path:
        """Where an exam's retrieved instances are kept."""
        return self._work_dir / exam.kos_uid

    def _set(self, job: ImportJob, state: JobState) -> None:
        with self._lock:
            job.state = state
            if job.done:
                job.finished = time.time()

    def _run(self, job: ImportJob, traits: PatientTraits | None, actor: Actor) -> None:
        exam = job.exam
        try:
            self._set(job, "retrieving")
            job.directory = self.directory_of(exam)
            report = self._retrieve(job, actor)
            with self._lock:
                job.received = len(report.received)
                job.bytes = report.bytes
                job.problems.extend(_differences(report))
            self._on_retrieved(exam, job.directory)
            if not report.complete:
                self._set(job, "incomplete")
            elif job.import_into_pacs and self._importer is not None:
                self._set(job, "importing")
                outcome = self._importer.import_study(sorted(report.received.values()), traits)
                with self._lock:
                    job.imported = count_of(outcome.stored)
                    job.committed = count_of(outcome.committed)
                self._set(job, "done" if job.committed == len(report.received) else "incomplete")
                if job.state == "incomplete":
                    job.problems.append(f"{job.committed} of {len(report.received)} instances confirmed by "
                                        "storage commitment")
            else:
                self._set(job, "done")
        except DrimboxError as exc:
            job.problems.append(f"{type(exc).__name__}: {exc}")
            self._set(job, "failed")
        except Exception as exc:  # reported on the job page rather than lost in a worker thread
            log.exception("import job failed", job=job.id)
            job.problems.append(f"unexpected {type(exc).__name__}: {exc}")
            self._set(job, "failed")
        (self.directory_of(exam) / _RECORD).unlink(missing_ok=True)  # ended: nothing to resume
        self._audit.record(AuditEvent(
            action="import" if job.import_into_pacs else "retrieve",
            outcome="success" if job.state == "done" else "failure",
            subject=actor.subject, rpps=actor.rpps, role=actor.role, emergency=actor.emergency,
            patient_ins=traits.ins if traits else None, study_uid=exam.study_uid, kos_uid=exam.kos_uid,
            detail="; ".join(job.problems)[:2000],
        ))

    def _retrieve(self, job: ImportJob, actor: Actor) -> RetrievalReport:
        assert job.directory is not None
        try:
            return self._retriever.retrieve(job.exam, actor, job.directory, progress=_Progress(job, self._lock))
        except SourceRefused as exc:
            if exc.status != 401 or not job.granted or self._deferral is None:
                raise
        # The user's token is no longer accepted: go on as the node, under the grant asked for at the start.
        node = self._deferral.actor(on_behalf_of=actor.subject)
        self._audit.record(AuditEvent(action="retrieve.resumed", outcome="success", subject=node.subject,
                                      study_uid=job.exam.study_uid, kos_uid=job.exam.kos_uid,
                                      detail=f"user {actor.subject}'s token refused by the source; "
                                             "resumed with the node's credential under a KOS grant"))
        with self._lock:
            job.problems.append("resumed with the node's credential (the user's token expired)")
        return self._retriever.retrieve(job.exam, node, job.directory, progress=_Progress(job, self._lock))

    def close(self) -> None:
        """Stop taking jobs; jobs in progress finish (a retrieval is resumable if cut)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _differences(report: RetrievalReport) -> list[str]:
    """What a page says when the source sent other than the KOS lists."""
    problems = []
    for label, uids in (("missing", report.missing), ("not in the manifest", report.unexpected),
                        ("not as the manifest says", report.mismatched)):
        if uids:
            problems.append(f"{len(uids)} instance(s) {label}: {', '.join(uids[:5])}{'…' if len(uids) > 5 else ''}")
    problems.extend(report.errors)
    return problems
