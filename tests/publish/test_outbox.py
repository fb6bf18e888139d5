"""The outbox: idempotent durable enqueue, per-exam ordering, leases, backoff, dead letters."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drimbox.publish.crash import CRASH_EXIT_STATUS, CrashPoint
from drimbox.publish.jobs import JobKind, JobState, exam_key
from drimbox.publish.outbox import Backoff, LeaseLost, Outbox, PreparedSubmission, StoredDocument
from drimbox.reports import ReportAction

from .factories import make_report, with_version


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    """Time that only moves when the test says so."""
    return Clock()


@pytest.fixture()
def outbox(tmp_path: Path, clock: Clock) -> Iterator[Outbox]:
    """An outbox file in a temporary directory, on the test clock, with mid-range jitter."""
    box = Outbox(tmp_path / "outbox.sqlite3", backoff=Backoff(base_s=10, max_s=100, max_attempts=4), clock=clock,
                 rng=lambda: 0.5)
    yield box
    box.close()


def test_commit_is_durable(outbox: Outbox) -> None:
    conn = sqlite3.connect(outbox.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: check the outbox's own connections.
    assert outbox._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_enqueue_is_idempotent(outbox: Outbox) -> None:
    report = make_report()
    first = outbox.enqueue(report)
    assert outbox.enqueue(report) == first
    assert [j.id for j in outbox.jobs()] == [first]
    job = outbox.job(first)
    assert job is not None and job.state is JobState.PENDING and job.kind is JobKind.PUBLISH
    assert job.report == report
    assert [s.step for s in outbox.steps(first)] == ["received"]


def test_new_version_and_withdrawal_are_new_jobs(outbox: Outbox) -> None:
    report = make_report()
    ids = {outbox.enqueue(report), outbox.enqueue(with_version(report, 2)),
           outbox.enqueue(make_report(action=ReportAction.WITHDRAW, version=2))}
    assert len(ids) == 3
    kinds = [j.kind for j in outbox.jobs()]
    assert kinds == [JobKind.PUBLISH, JobKind.PUBLISH, JobKind.WITHDRAW]
    exam = outbox.exam(exam_key(report.study_instance_uid, report.accession_number))
    assert exam is not None and exam.report is not None and exam.report.version_number == 2


def test_late_older_version_does_not_become_the_exam_report(outbox: Outbox) -> None:
    report = make_report()
    outbox.enqueue(with_version(report, 3))
    outbox.enqueue(with_version(report, 2))
    exam = outbox.exam(exam_key(report.study_instance_uid, report.accession_number))
    assert exam is not None and exam.report is not None and exam.report.version_number == 3


def test_jobs_of_one_exam_run_one_at_a_time_in_order(outbox: Outbox) -> None:
    a1 = outbox.enqueue(make_report(accession="A"))
    a2 = outbox.enqueue(with_version(make_report(accession="A"), 2))
    b1 = outbox.enqueue(make_report(study_uid="1.2.3.9", accession="B"))
    first = outbox.claim("w1", 60)
    second = outbox.claim("w2", 60)
    assert first is not None and second is not None
    assert (first.job.id, second.job.id) == (a1, b1)  # a2 waits for a1
    assert outbox.claim("w3", 60) is None
    first.complete("published", published=True)
    third = outbox.claim("w3", 60)
    assert third is not None and third.job.id == a2


def test_transient_failure_backs_off_then_dead_letters(outbox: Outbox, clock: Clock) -> None:
    job_id = outbox.enqueue(make_report())
    delays = []
    for attempt in range(1, 5):
        handle = outbox.claim("w", 60)
        assert handle is not None and handle.job.attempts == attempt
        before = clock.now
        state = handle.fail("registry busy", permanent=False)
        job = outbox.job(job_id)
        assert job is not None
        if attempt < 4:
            assert state is JobState.FAILED
            delays.append(job.not_before - before)
            assert outbox.claim("w", 60) is None  # not before its time
            clock.now = job.not_before
        else:
            assert state is JobState.DEAD_LETTER
            assert job.last_error is not None and "gave up after 4 attempts" in job.last_error
    # rng 0.5 → 3/4 of the exponential delay, capped at 100 s
    assert delays == [7.5, 15.0, 30.0]
    assert Backoff(base_s=10, max_s=100).delay(10, lambda: 1.0) == 100


def test_permanent_failure_dead_letters_at_once_and_retry_revives(outbox: Outbox) -> None:
    job_id = outbox.enqueue(make_report())
    handle = outbox.claim("w", 60)
    assert handle is not None
    assert handle.fail("identity not qualified", permanent=True) is JobState.DEAD_LETTER
    assert outbox.claim("w", 60) is None
    assert [j.id for j in outbox.jobs([JobState.DEAD_LETTER])] == [job_id]
    assert outbox.retry(job_id)
    again = outbox.claim("w", 60)
    assert again is not None and again.job.id == job_id and again.job.attempts == 1


def test_dead_letter_does_not_block_the_exam(outbox: Outbox) -> None:
    outbox.enqueue(make_report())
    later = outbox.enqueue(with_version(make_report(), 2))
    handle = outbox.claim("w", 60)
    assert handle is not None
    handle.fail("refused", permanent=True)
    nxt = outbox.claim("w", 60)
    assert nxt is not None and nxt.job.id == later


def test_expired_lease_is_reclaimed_and_the_old_holder_is_fenced(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(make_report())
    stale = outbox.claim("w1", 30)
    assert stale is not None
    assert outbox.claim("w2", 30) is None
    clock.now += 31
    fresh = outbox.claim("w2", 30)
    assert fresh is not None and fresh.job.id == stale.job.id and fresh.job.attempts == 2
    with pytest.raises(LeaseLost):
        stale.complete("published", published=True)
    with pytest.raises(LeaseLost):
        stale.step("sending", "x")
    fresh.complete("published", published=True)


def test_steps_extend_the_lease(outbox: Outbox, clock: Clock) -> None:
    outbox.enqueue(make_report())
    handle = outbox.claim("w1", 30)
    assert handle is not None
    clock.now += 20
    handle.step("walked", "1 series")
    clock.now += 20
    assert outbox.claim("w2", 30) is None


def test_recover_makes_in_flight_jobs_claimable_now(outbox: Outbox) -> None:
    job_id = outbox.enqueue(make_report())
    assert outbox.claim("dead-process", 3600) is not None
    assert outbox.recover() == 1
    handle = outbox.claim("w", 60)
    assert handle is not None and handle.job.id == job_id
    assert "recovered" in [s.step for s in outbox.steps(job_id)]


def test_revision_is_reserved_once_and_submission_round_trips(outbox: Outbox) -> None:
    report = make_report()
    outbox.enqueue(report)
    handle = outbox.claim("w", 60)
    assert handle is not None
    assert handle.reserve_revision() == 1
    assert handle.reserve_revision() == 1
    prepared = PreparedSubmission(
        kos_uid="1.2.3.4", entry_uuid="urn:uuid:0", submission_uid="1.2.3.5", patient_id="p", replaces=None,
        instances=("1.1", "1.2"), report_version=1, metadata=b"<m/>",
        documents=(StoredDocument("KOS", "application/dicom", b"\x00\x01"), StoredDocument("SIG", "text/xml", b"<s/>")),
    )
    handle.save_submission(prepared)
    assert outbox.submission(handle.job.id) == prepared
    handle.complete("published", published=True)
    exam = outbox.exam(handle.job.exam_key)
    assert exam is not None and exam.published == prepared and exam.kos_uids == ("1.2.3.4",)
    # the next job of the exam gets the next revision
    outbox.enqueue(with_version(report, 2))
    nxt = outbox.claim("w", 60)
    assert nxt is not None and nxt.reserve_revision() == 2


def test_concurrent_enqueues_of_one_message_make_one_job(outbox: Outbox) -> None:
    report = make_report()
    ids: list[int] = []
    threads = [threading.Thread(target=lambda: ids.append(outbox.enqueue(report))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(outbox.jobs()) == 1


def test_exam_jobs_and_lookups(outbox: Outbox, clock: Clock) -> None:
    report = make_report()
    outbox.enqueue(report)
    key = "reject|note-1"
    first = outbox.enqueue_exam(JobKind.REJECT, report.study_instance_uid, report.accession_number,
                                detail={"rejected": ["1.2"]}, key=key)
    assert outbox.enqueue_exam(JobKind.REJECT, report.study_instance_uid, report.accession_number, key=key) == first
    delayed = outbox.enqueue_exam(JobKind.REFRESH, report.study_instance_uid, report.accession_number, delay_s=50)
    job = outbox.job(first)
    assert job is not None and job.detail == {"rejected": ["1.2"]} and job.report is None
    later = outbox.job(delayed)
    assert later is not None and later.not_before == clock.now + 50
    assert [e.accession_number for e in outbox.exams_for_study(report.study_instance_uid)] == ["ACC0001"]
    assert [e.study_instance_uid for e in outbox.exams_for_accession("ACC0001")] == [report.study_instance_uid]
    assert outbox.counts() == {JobState.PENDING: 3}


_CHILD = """
import sys
from pathlib import Path
from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.outbox import Outbox
from tests.publish.factories import make_report
Outbox(Path(sys.argv[1]), crash=CrashPlan(CrashPoint(sys.argv[2]))).enqueue(make_report())
"""


@pytest.mark.parametrize(("point", "jobs"), [(CrashPoint.BEFORE_COMMIT, 0), (CrashPoint.BEFORE_ACK, 1)])
def test_crash_around_the_commit(tmp_path: Path, point: CrashPoint, jobs: int) -> None:
    path = tmp_path / "outbox.sqlite3"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path), point.value], cwd=root, capture_output=True,
                          timeout=60)
    assert done.returncode == CRASH_EXIT_STATUS, done.stderr.decode()
    box = Outbox(path)
    try:
        assert len(box.jobs()) == jobs
        box.enqueue(make_report())  # the RIS resends: exactly one job either way
        assert len(box.jobs()) == 1
    finally:
        box.close()
