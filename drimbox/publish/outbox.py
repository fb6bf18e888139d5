"""The durable publication queue (DESIGN F1/F3): what the MLLP listener commits before it ACKs.

Stdlib ``sqlite3`` rather than SQLAlchemy: the outbox is a node-local file with one writer
process, and its guarantees rest on exact transaction control — ``BEGIN IMMEDIATE`` to claim a job
without a race, a ``COMMIT`` that has fsynced (WAL + ``synchronous=FULL``) before
:meth:`Outbox.enqueue` returns — which an ORM session and its pool would only hide. Nothing here
needs another database engine.

Exactly one approved KOS per acknowledged report rests on four facts:

1. :meth:`Outbox.enqueue` is idempotent by message content (:func:`~drimbox.publish.jobs.report_job_key`)
   and returns only after the commit: an ACK always means a durable job, and a resent message
   finds its job again.
2. The ITI-41 request is prepared once and stored (:meth:`JobHandle.save_submission`) before it is
   sent: every retry resends the same uniqueIds and the same bytes, which the registry accepts as
   the same submission (ITI TF-3 4.2.1: a uniqueId resubmitted with the same hash is no new document).
3. The jobs of one exam run one at a time, in arrival order; an RPLC always names the exam's
   approved KOS, so versions replace each other instead of piling up.
4. A worker holds a job through a lease, and every write it makes is fenced by that lease; a job
   whose worker died is claimed again (at once after a restart, see :meth:`Outbox.recover`).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from drimbox.errors import DrimboxError
from drimbox.publish._schema import connect, create_schema
from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.jobs import Job, JobKind, JobState, exam_key, report_job_key
from drimbox.publish.serialize import report_from_json, report_to_json
from drimbox.reports import ImagingReport, ReportAction

__all__ = [
    "Backoff",
    "ExamRecord",
    "JobHandle",
    "LeaseLost",
    "Outbox",
    "PreparedSubmission",
    "StepRecord",
    "StoredDocument",
]


class LeaseLost(DrimboxError):
    """A worker wrote to a job it no longer holds (its lease expired and another worker took it)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays: exponential from ``base_s``, capped at ``max_s``, with jitter, at most ``max_attempts`` runs.

    The jitter draws each delay in [d/2, d]: nodes that lost the registry at the same moment do not
    all come back at the same second.
    """

    base_s: float = 5.0
    max_s: float = 3600.0
    max_attempts: int = 20

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        """The wait before the run that follows ``attempts`` runs (``attempts`` >= 1)."""
        full = min(self.max_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return full / 2 + rng() * full / 2


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """One document of a prepared submission (ITI-41 ``Document`` element id, MIME type, bytes)."""

    doc_id: str
    mime_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class PreparedSubmission:
    """An ITI-41 request as it will be sent, and sent again, byte for byte."""

    kos_uid: str
    """The KOS SOP Instance UID = the document entry's uniqueId."""
    entry_uuid: str
    """The KOS document entry's entryUUID (``urn:uuid:…``)."""
    submission_uid: str
    patient_id: str
    """XDS patient id (CX, INS with its OID)."""
    replaces: str | None
    """entryUUID of the approved KOS this one replaces (RPLC), if any."""
    instances: tuple[str, ...]
    """SOP Instance UIDs the KOS references (sorted), to tell a changed exam from an unchanged one."""
    report_version: int
    metadata: bytes
    """The ``lcm:SubmitObjectsRequest`` element (XML)."""
    documents: tuple[StoredDocument, ...]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One recorded step of a job."""

    at: float
    step: str
    outcome: str


@dataclass(frozen=True, slots=True)
class ExamRecord:
    """What the outbox knows of one exam."""

    exam_key: str
    study_instance_uid: str
    accession_number: str
    revision: int
    report: ImagingReport | None
    """The latest report version received for the exam (what a refresh republishes)."""
    published: PreparedSubmission | None
    """The submission whose KOS is the exam's approved one (``None``: nothing published, or withdrawn)."""
    withdrawn: bool
    kos_uids: tuple[str, ...]
    """Every KOS uniqueId ever prepared for the exam (what this node may deprecate)."""


_JOB_COLUMNS = (
    "id, job_key, kind, exam_key, study_uid, accession, report_version, report, detail, state, attempts, "
    "not_before, revision, last_error, outcome, created, updated"
)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        key=row["job_key"],
        kind=JobKind(row["kind"]),
        exam_key=row["exam_key"],
        study_instance_uid=row["study_uid"],
        accession_number=row["accession"],
        report_version=row["report_version"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        not_before=row["not_before"],
        created=row["created"],
        updated=row["updated"],
        report_json=row["report"],
        detail_json=row["detail"],
        last_error=row["last_error"],
        outcome=row["outcome"],
        revision=row["revision"],
    )


class Outbox:
    """The outbox file: enqueue (any thread, any process), claim and settle jobs (the worker).

    Parameters
    ----------
    path:
        The SQLite file (created with its directory).
    backoff:
        Retry policy of transient failures.
    crash:
        Test-only crash points (:mod:`drimbox.publish.crash`).
    clock:
        Seconds since the epoch (injected by tests).
    """

    def __init__(
        self,
        path: Path,
        *,
        backoff: Backoff = Backoff(),
        crash: CrashPlan | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.path = path
        self.backoff = backoff
        self._crash = crash or CrashPlan()
        self._clock = clock
        self._rng = rng
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._work = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        create_schema(self._conn())

    # -- plumbing -------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(str(self.path))
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock, no lost claim race
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def wait_for_work(self, timeout: float) -> None:
        """Block until a job is enqueued in this process, or ``timeout`` seconds pass."""
        self._work.wait(timeout)
        self._work.clear()

    # -- enqueue --------------------------------------------------------------------------------

    def enqueue(self, report: ImagingReport) -> int:
        """Queue the publication (or withdrawal) a report message asks for; return the job id.

        Returns only once the job is committed to disk: this is what the MLLP listener calls before
        answering AA. Enqueueing the same message again returns the same job (idempotent).
        """
        kind = JobKind.WITHDRAW if report.action is ReportAction.WITHDRAW else JobKind.PUBLISH
        key = report_job_key(report)
        exam = exam_key(report.study_instance_uid, report.accession_number)
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM jobs WHERE job_key = ?", (key,)).fetchone()
            if row is not None:
                job_id = int(row["id"])
            else:
                job_id = self._insert(conn, key=key, kind=kind, exam=exam, study=report.study_instance_uid,
                                      accession=report.accession_number, version=report.version_number,
                                      report=report_to_json(report), detail=None, not_before=now, now=now)
                self._step(conn, job_id, "received", report.message_control_id or report.message_type or "-", now)
                if kind is JobKind.PUBLISH:
                    conn.execute(
                        "UPDATE exams SET report_job = ?, report_version = ? WHERE exam_key = ? "
                        "AND (report_version IS NULL OR report_version <= ?)",
                        (job_id, report.version_number, exam, report.version_number),
                    )
            self._crash.reach(CrashPoint.BEFORE_COMMIT)
        self._crash.reach(CrashPoint.BEFORE_ACK)
        self._work.set()
        return job_id

    def accept(self, report: ImagingReport) -> None:
        """:meth:`enqueue` with the signature the MLLP listener expects (``accept(report) -> None``)."""
        self.enqueue(report)

    def enqueue_exam(
        self,
        kind: JobKind,
        study_instance_uid: str,
        accession_number: str,
        *,
        detail: dict[str, object] | None = None,
        key: str | None = None,
        delay_s: float = 0.0,
    ) -> int:
        """Queue a refresh or rejection job for a known exam (idempotent when ``key`` is given)."""
        exam = exam_key(study_instance_uid, accession_number)
        now = self._clock()
        with self._tx() as conn:
            if key is not None:
                row = conn.execute("SELECT id FROM jobs WHERE job_key = ?", (key,)).fetchone()
                if row is not None:
                    return int(row["id"])
            job_key_ = key or f"{kind.value}|{exam}|{now:.6f}|{self._rng():.12f}"
            job_id = self._insert(conn, key=job_key_, kind=kind, exam=exam, study=study_instance_uid,
                                  accession=accession_number, version=None, report=None,
                                  detail=json.dumps(detail) if detail else None, not_before=now + delay_s, now=now)
            self._step(conn, job_id, "received", kind.value, now)
        self._work.set()
        return job_id

    def _insert(
        self, conn: sqlite3.Connection, *, key: str, kind: JobKind, exam: str, study: str, accession: str,
        version: int | None, report: str | None, detail: str | None, not_before: float, now: float,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO jobs (job_key, kind, exam_key, study_uid, accession, report_version, report, detail, "
            "state, not_before, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, kind.value, exam, study, accession, version, report, detail, JobState.PENDING.value,
             not_before, now, now),
        )
        conn.execute(
            "INSERT OR IGNORE INTO exams (exam_key, study_uid, accession) VALUES (?, ?, ?)", (exam, study, accession)
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _step(conn: sqlite3.Connection, job_id: int, step: str, outcome: str, now: float) -> None:
        conn.execute("INSERT INTO steps (job_id, at, step, outcome) VALUES (?, ?, ?, ?)", (job_id, now, step, outcome))

    # -- worker side ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Make every in-flight job claimable now; return how many there were.

        Only for the one worker process at its start (it holds the outbox's worker lock): any job
        still in flight was abandoned by a process that died.
        """
        now = self._clock()
        with self._tx() as conn:
            rows = conn.execute("SELECT id FROM jobs WHERE state = ?", (JobState.IN_FLIGHT.value,)).fetchall()
            for row in rows:
                self._step(conn, row["id"], "recovered", "in flight when the node stopped", now)
            conn.execute(
                "UPDATE jobs SET state = ?, not_before = ?, lease_owner = NULL, lease_until = NULL, updated = ? "
                "WHERE state = ?",
                (JobState.FAILED.value, now, now, JobState.IN_FLIGHT.value),
            )
        return len(rows)

    def claim(self, owner: str, lease_s: float) -> JobHandle | None:
        """Take the oldest runnable job whose exam has no earlier unfinished job, under a lease."""
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs AS j WHERE "
                "((j.state IN ('pending', 'failed') AND j.not_before <= :now) "
                " OR (j.state = 'in_flight' AND j.lease_until < :now)) "
                "AND NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.exam_key = j.exam_key AND e.id < j.id "
                "                AND e.state NOT IN ('done', 'dead_letter')) "
                "ORDER BY j.id LIMIT 1",
                {"now": now},
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated = ? "
                "WHERE id = ?",
                (JobState.IN_FLIGHT.value, owner, now + lease_s, now, row["id"]),
            )
            claimed = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return JobHandle(self, _job(claimed), owner, lease_s)

    @contextmanager
    def _fenced(self, job_id: int, owner: str) -> Iterator[sqlite3.Connection]:
        with self._tx() as conn:
            row = conn.execute("SELECT state, lease_owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["state"] != JobState.IN_FLIGHT.value or row["lease_owner"] != owner:
                raise LeaseLost(f"job {job_id} is no longer held by {owner}")
            yield conn

    # -- reading --------------------------------------------------------------------------------

    def job(self, job_id: int) -> Job | None:
        """One job by id."""
        row = self._conn().execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def jobs(self, states: Sequence[JobState] = (), *, limit: int = 1000) -> list[Job]:
        """Jobs in the given states (all when empty), oldest first."""
        where = f"WHERE state IN ({', '.join('?' for _ in states)})" if states else ""
        rows = self._conn().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs {where} ORDER BY id LIMIT ?", (*[s.value for s in states], limit)
        ).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[JobState, int]:
        """Number of jobs per state."""
        rows = self._conn().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {JobState(r[0]): int(r[1]) for r in rows}

    def steps(self, job_id: int) -> list[StepRecord]:
        """The recorded steps of a job, in order."""
        rows = self._conn().execute(
            "SELECT at, step, outcome FROM steps WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        return [StepRecord(r["at"], r["step"], r["outcome"]) for r in rows]

    def submission(self, job_id: int) -> PreparedSubmission | None:
        """The prepared ITI-41 request of a job, if it got that far."""
        conn = self._conn()
        row = conn.execute("SELECT * FROM submissions WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        docs = conn.execute(
            "SELECT doc_id, mime_type, content FROM documents WHERE job_id = ? ORDER BY rowid", (job_id,)
        ).fetchall()
        return PreparedSubmission(
            kos_uid=row["kos_uid"], entry_uuid=row["entry_uuid"], submission_uid=row["submission_uid"],
            patient_id=row["patient_id"], replaces=row["replaces"], instances=tuple(json.loads(row["instances"])),
            report_version=row["report_version"], metadata=bytes(row["metadata"]),
            documents=tuple(StoredDocument(d["doc_id"], d["mime_type"], bytes(d["content"])) for d in docs),
        )

    def exam(self, key: str) -> ExamRecord | None:
        """What is known of the exam with this key."""
        conn = self._conn()
        row = conn.execute("SELECT * FROM exams WHERE exam_key = ?", (key,)).fetchone()
        if row is None:
            return None
        report = None
        if row["report_job"] is not None:
            text = conn.execute("SELECT report FROM jobs WHERE id = ?", (row["report_job"],)).fetchone()[0]
            report = report_from_json(text) if text else None
        published = self.submission(row["published_job"]) if row["published_job"] is not None else None
        uids = conn.execute(
            "SELECT s.kos_uid FROM submissions AS s JOIN jobs AS j ON j.id = s.job_id WHERE j.exam_key = ? "
            "ORDER BY s.job_id", (key,)
        ).fetchall()
        return ExamRecord(
            exam_key=key, study_instance_uid=row["study_uid"], accession_number=row["accession"],
            revision=row["revision"], report=report, published=published, withdrawn=bool(row["withdrawn"]),
            kos_uids=tuple(u[0] for u in uids),
        )

    def exams_for_study(self, study_instance_uid: str) -> list[ExamRecord]:
        """Every exam of this study (normally one; an accession change makes two)."""
        rows = self._conn().execute(
            "SELECT exam_key FROM exams WHERE study_uid = ? ORDER BY exam_key", (study_instance_uid,)
        ).fetchall()
        return [e for e in (self.exam(r[0]) for r in rows) if e is not None]

    def exams_for_accession(self, accession_number: str) -> list[ExamRecord]:
        """Every exam with this accession number."""
        rows = self._conn().execute(
            "SELECT exam_key FROM exams WHERE accession = ? ORDER BY exam_key", (accession_number,)
        ).fetchall()
        return [e for e in (self.exam(r[0]) for r in rows) if e is not None]

    def published_kos(self, kos_uid: str) -> bytes | None:
        """The KOS bytes of ``kos_uid`` while it is its exam's approved KOS, else ``None``.

        What the network face's manifest scope asks (DESIGN §2b): a KOS this node prepared but that
        was since replaced (RPLC), withdrawn or deprecated is no longer ``published_job`` of its
        exam, so a peer presenting it is refused.
        """
        row = self._conn().execute(
            "SELECT d.content FROM submissions AS s JOIN exams AS e ON e.published_job = s.job_id "
            "JOIN documents AS d ON d.job_id = s.job_id "
            "WHERE s.kos_uid = ? AND e.withdrawn = 0 AND d.mime_type = 'application/dicom' LIMIT 1", (kos_uid,)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    # -- operator -------------------------------------------------------------------------------

    def retry(self, job_id: int) -> bool:
        """Send a failed or dead-letter job back to pending with a fresh attempt budget."""
        now = self._clock()
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = ?, attempts = 0, not_before = ?, updated = ? WHERE id = ? AND state IN (?, ?)",
                (JobState.PENDING.value, now, now, job_id, JobState.FAILED.value, JobState.DEAD_LETTER.value),
            )
            if cursor.rowcount:
                self._step(conn, job_id, "retry", "sent back to pending by an operator", now)
        self._work.set()
        return bool(cursor.rowcount)


class JobHandle:
    """A claimed job: every write goes through here and is fenced by the worker's lease."""

    def __init__(self, outbox: Outbox, job: Job, owner: str, lease_s: float) -> None:
        self.outbox = outbox
        self.job = job
        self.owner = owner
        self.lease_s = lease_s

    def step(self, step: str, outcome: str) -> None:
        """Record a step's outcome and extend the lease (each step is progress)."""
        now = self.outbox._clock()
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            Outbox._step(conn, self.job.id, step, outcome, now)
            conn.execute("UPDATE jobs SET lease_until = ?, updated = ? WHERE id = ?", (now + self.lease_s, now,
                                                                                      self.job.id))

    def reserve_revision(self) -> int:
        """The exam's KOS revision for this job: allocated once, the same on every retry."""
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            row = conn.execute("SELECT revision FROM jobs WHERE id = ?", (self.job.id,)).fetchone()
            if row["revision"] is not None:
                return int(row["revision"])
            conn.execute("UPDATE exams SET revision = revision + 1 WHERE exam_key = ?", (self.job.exam_key,))
            revision = int(conn.execute("SELECT revision FROM exams WHERE exam_key = ?",
                                        (self.job.exam_key,)).fetchone()[0])
            conn.execute("UPDATE jobs SET revision = ? WHERE id = ?", (revision, self.job.id))
            return revision

    def save_submission(self, prepared: PreparedSubmission) -> None:
        """Store the ITI-41 request before it is first sent (see the module docstring, point 2)."""
        now = self.outbox._clock()
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            conn.execute(
                "INSERT INTO submissions (job_id, kos_uid, entry_uuid, submission_uid, patient_id, replaces, "
                "instances, report_version, metadata, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.job.id, prepared.kos_uid, prepared.entry_uuid, prepared.submission_uid, prepared.patient_id,
                 prepared.replaces, json.dumps(list(prepared.instances)), prepared.report_version,
                 prepared.metadata, now),
            )
            conn.executemany(
                "INSERT INTO documents (job_id, doc_id, mime_type, content) VALUES (?, ?, ?, ?)",
                [(self.job.id, d.doc_id, d.mime_type, d.content) for d in prepared.documents],
            )
            Outbox._step(conn, self.job.id, "prepared", f"KOS {prepared.kos_uid}"
                         + (f" replacing {prepared.replaces}" if prepared.replaces else ""), now)

    def complete(self, outcome: str, *, published: bool = False, withdrawn: bool = False) -> None:
        """Mark the job done; record the exam's new published KOS (or its withdrawal)."""
        now = self.outbox._clock()
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, outcome = ?, last_error = NULL, lease_owner = NULL, lease_until = NULL, "
                "updated = ? WHERE id = ?", (JobState.DONE.value, outcome, now, self.job.id),
            )
            if published:
                conn.execute("UPDATE exams SET published_job = ?, withdrawn = 0 WHERE exam_key = ?",
                             (self.job.id, self.job.exam_key))
            elif withdrawn:
                conn.execute("UPDATE exams SET published_job = NULL, withdrawn = 1 WHERE exam_key = ?",
                             (self.job.exam_key,))
            Outbox._step(conn, self.job.id, "done", outcome, now)

    def unpublish(self, outcome: str) -> None:
        """The exam's published KOS was deprecated without a successor (identity downgrade): forget it.

        The job itself is not settled (the caller fails it); a later qualified version publishes
        afresh instead of finding its KOS "unchanged".
        """
        now = self.outbox._clock()
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            conn.execute("UPDATE exams SET published_job = NULL WHERE exam_key = ?", (self.job.exam_key,))
            Outbox._step(conn, self.job.id, "unpublished", outcome, now)

    def fail(self, error: str, *, permanent: bool) -> JobState:
        """Settle a failed run: retry later with backoff, or dead letter (permanent, or attempts exhausted)."""
        now = self.outbox._clock()
        backoff = self.outbox.backoff
        exhausted = self.job.attempts >= backoff.max_attempts
        state = JobState.DEAD_LETTER if permanent or exhausted else JobState.FAILED
        not_before = now if state is JobState.DEAD_LETTER else now + backoff.delay(self.job.attempts,
                                                                                   self.outbox._rng)
        if exhausted and not permanent:
            error = f"{error} (gave up after {self.job.attempts} attempts)"
        with self.outbox._fenced(self.job.id, self.owner) as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, last_error = ?, not_before = ?, lease_owner = NULL, lease_until = NULL, "
                "updated = ? WHERE id = ?", (state.value, error, not_before, now, self.job.id),
            )
            Outbox._step(conn, self.job.id, state.value, error, now)
        return state
