"""Publication jobs as the outbox stores them: kinds, states, keys.

A job's *key* makes enqueueing idempotent: the RIS resends a message it got no ACK for, and the
second copy must land on the first job, not create another. The *exam key* (Study Instance UID +
accession number) orders the jobs of one exam: they run one at a time, oldest first, so that a
report update never overtakes the first version and a withdrawal comes after what it withdraws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from drimbox.publish.serialize import report_from_json
from drimbox.reports import ImagingReport, ReportAction

__all__ = ["Job", "JobKind", "JobState", "exam_key", "report_job_key"]


class JobState(StrEnum):
    """Life cycle: pending → in_flight → done | failed (retried later) | dead_letter (operator)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    """A transient failure: the job runs again at ``not_before`` (exponential backoff)."""
    DEAD_LETTER = "dead_letter"
    """A permanent refusal, or retries exhausted: only an operator sends it back (``drimbox outbox retry``)."""

    @property
    def final(self) -> bool:
        """Whether the worker is done with the job (successfully or not)."""
        return self in (JobState.DONE, JobState.DEAD_LETTER)


class JobKind(StrEnum):
    """What a job asks for."""

    PUBLISH = "publish"
    """Publish the exam's KOS for this report version (RPLC of the previous one, if any)."""
    WITHDRAW = "withdraw"
    """Deprecate the exam's published KOS (ITI-57): the report was withdrawn."""
    REFRESH = "refresh"
    """Walk the PACS again and republish if the exam's instances changed (manual publication,
    images arriving after the report)."""
    REJECT = "reject"
    """An IOCM rejection note named instances of the exam: walk again, republish without them or
    deprecate when nothing remains."""


def exam_key(study_instance_uid: str, accession_number: str) -> str:
    """The exam's identity for ordering and idempotence: Study Instance UID + accession number."""
    return f"{study_instance_uid}|{accession_number}"


def report_job_key(report: ImagingReport) -> str:
    """The idempotence key of the job a report message creates (same message → same key)."""
    kind = JobKind.WITHDRAW if report.action is ReportAction.WITHDRAW else JobKind.PUBLISH
    return "|".join(
        (kind.value, report.study_instance_uid, report.accession_number, report.set_id, str(report.version_number))
    )


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the outbox, as the worker and ``drimbox outbox`` see it."""

    id: int
    key: str
    kind: JobKind
    exam_key: str
    study_instance_uid: str
    accession_number: str
    report_version: int | None
    state: JobState
    attempts: int
    not_before: float
    created: float
    updated: float
    report_json: str | None = field(default=None, repr=False)
    detail_json: str | None = field(default=None, repr=False)
    last_error: str | None = None
    outcome: str | None = None
    revision: int | None = None
    """The exam's KOS revision reserved for this job (fixes the KOS SOP Instance UID)."""

    @property
    def report(self) -> ImagingReport | None:
        """The report this job carries (``None`` for refresh and rejection jobs)."""
        return report_from_json(self.report_json) if self.report_json else None

    @property
    def detail(self) -> dict[str, Any]:
        """Kind-specific data (rejected SOP Instance UIDs, who asked for a manual publication)."""
        return dict(json.loads(self.detail_json)) if self.detail_json else {}
