"""The publication pipeline against real Orthanc and the real registry service (in process).

Every scenario ends by counting the exam's approved KOS in the registry (ITI-18): exactly one
while the exam is published, none once withdrawn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from drimbox.devnet.orthanc import OrthancProcess
from drimbox.publish import dmp
from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.jobs import JobKind, JobState
from drimbox.publish.submission import KOS_TYPE
from drimbox.publish.vihf import VihfSubject
from drimbox.publish.xds import STATUS, FindDocumentsQuery, RegistryDocument, XdsClient, XdsEndpoints
from drimbox.reports import IdentityStatus, ImagingReport, ReportAction, Visibility
from drimbox.testdata import GeneratedStudy, make_patient
from drimbox.testdata.exam import write_exam_study

from .conftest import NETWORK_DICOMWEB, ROLE, SPECIALTY, Bench
from .factories import report_for
from .kos_reading import referenced_instances, retrieve_urls

STUDY = "1.2.826.0.1.3680043.10.1003.1"


@pytest.fixture()
def exam(tmp_path: Path, orthanc_a_clean: OrthancProcess) -> GeneratedStudy:
    """A small CT exam (2 series x 3 slices) stored in Orthanc."""
    study = write_exam_study(tmp_path / "exam", study_uid=STUDY, accession="ACC1003", patient=make_patient(1003),
                             modality="CT")
    orthanc_a_clean.upload(study.files)
    return study


def _report(study: GeneratedStudy, **kw: object) -> ImagingReport:
    return report_for(study.study_instance_uid, study.accession_number, study.patient, **kw)  # type: ignore[arg-type]


def kos_entries(bench: Bench, report: ImagingReport, statuses: tuple[str, ...] = (STATUS.APPROVED,)
                ) -> list[RegistryDocument]:
    """The exam's KOS entries in the registry (ITI-18 by Study Instance UID)."""
    patient_id = dmp.patient_cx(report.patient)
    assertion = bench.vihf.issue(VihfSubject(report.author, ROLE, SPECIALTY, patient_id))
    return bench.xds.find_documents(
        FindDocumentsQuery(patient_id, statuses=statuses, reference_ids=(dmp.study_reference(STUDY),),
                           type_codes=(KOS_TYPE,)), assertion=assertion)


def retrieve_kos(bench: Bench, report: ImagingReport, entry: RegistryDocument) -> bytes:
    """ITI-43 of one KOS."""
    assertion = bench.vihf.issue(VihfSubject(report.author, ROLE, SPECIALTY, dmp.patient_cx(report.patient)))
    (document,) = bench.xds.retrieve([(entry.repository_unique_id or "", entry.unique_id)], assertion=assertion)
    assert document.mime_type == "application/dicom"
    return document.content


def test_publish_then_update_replaces(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    assert bench.run() == 1
    (first,) = kos_entries(bench, report)
    assert first.slot("creationTime") and first.type_code is not None and first.type_code.code == KOS_TYPE.code
    kos = retrieve_kos(bench, report, first)
    assert referenced_instances(kos) == {i.sop_instance_uid for i in exam.instances}
    assert retrieve_urls(kos) == {f"{NETWORK_DICOMWEB}/studies/{STUDY}/series/{uid}"
                                  for uid in {i.series_instance_uid for i in exam.instances}}
    assert "CT@1.2.250.1.213.1.1.5.618" in {f"{c.code}@{c.scheme}" for _s, c in first.classifications}
    assert dmp.accession_reference("ACC1003", report.accession_issuer) in first.reference_ids

    bench.outbox.enqueue(dataclasses.replace(report, version_number=2, message_control_id="MSG2"))
    assert bench.run() == 1
    (second,) = kos_entries(bench, report)
    assert second.unique_id != first.unique_id
    everything = kos_entries(bench, report, (STATUS.APPROVED, STATUS.DEPRECATED))
    assert {d.unique_id: d.status for d in everything} == {first.unique_id: STATUS.DEPRECATED,
                                                           second.unique_id: STATUS.APPROVED}
    assert [j.state for j in bench.outbox.jobs()] == [JobState.DONE, JobState.DONE]


def test_resent_message_and_unchanged_refresh_publish_nothing_new(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.outbox.enqueue(report)  # the RIS resends: same job
    bench.run()
    job = bench.outbox.enqueue_exam(JobKind.REFRESH, STUDY, "ACC1003")
    bench.run()
    assert (bench.outbox.job(job) or pytest.fail()).outcome.startswith("unchanged")  # type: ignore[union-attr]
    assert len(kos_entries(bench, report, (STATUS.APPROVED, STATUS.DEPRECATED))) == 1


def test_images_after_the_report_refresh_the_kos(bench: Bench, exam: GeneratedStudy, tmp_path: Path,
                                                 orthanc_a_clean: OrthancProcess) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    late = write_exam_study(tmp_path / "late", study_uid=STUDY, accession="ACC1003", patient=exam.patient,
                            modality="MG")  # another series of the same study, arriving later
    orthanc_a_clean.upload(late.files)
    bench.outbox.enqueue_exam(JobKind.REFRESH, STUDY, "ACC1003")
    bench.run()
    (current,) = kos_entries(bench, report)
    expected = {i.sop_instance_uid for i in (*exam.instances, *late.instances)}
    assert referenced_instances(retrieve_kos(bench, report, current)) == expected


def test_rejection_republishes_without_the_instances_then_deprecates(bench: Bench, exam: GeneratedStudy,
                                                                     orthanc_a_clean: OrthancProcess) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    rejected = exam.instances[0].sop_instance_uid
    bench.outbox.enqueue_exam(JobKind.REJECT, STUDY, "ACC1003", detail={"rejected": [rejected]}, key="reject|n1")
    bench.run()
    (current,) = kos_entries(bench, report)
    assert referenced_instances(retrieve_kos(bench, report, current)) == (
        {i.sop_instance_uid for i in exam.instances} - {rejected})
    everything = [i.sop_instance_uid for i in exam.instances]
    bench.outbox.enqueue_exam(JobKind.REJECT, STUDY, "ACC1003", detail={"rejected": everything}, key="reject|n2")
    bench.run()
    assert kos_entries(bench, report) == []


def test_withdrawal_deprecates(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.outbox.enqueue(dataclasses.replace(report, action=ReportAction.WITHDRAW, message_control_id="W"))
    assert bench.run() == 2
    assert kos_entries(bench, report) == []
    assert len(kos_entries(bench, report, (STATUS.DEPRECATED,))) == 1
    exam_record = bench.outbox.exam(bench.outbox.jobs()[0].exam_key)
    assert exam_record is not None and exam_record.withdrawn and exam_record.published is None


@pytest.mark.parametrize("change", ["unqualified", "not-for-dmp"])
def test_permanent_refusals_go_to_the_dead_letter_list(bench: Bench, exam: GeneratedStudy, change: str) -> None:
    report = _report(exam)
    if change == "unqualified":
        report = dataclasses.replace(report, patient=dataclasses.replace(
            report.patient, status=IdentityStatus.PROVISIONAL, ins=None, ins_oid=None))
    else:
        report = dataclasses.replace(report, visibility=Visibility(to_dmp=False))
    job_id = bench.outbox.enqueue(report)
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.DEAD_LETTER and job.attempts == 1


def test_study_not_in_the_pacs_is_retried_then_dead_lettered(bench: Bench, orthanc_a_clean: OrthancProcess) -> None:
    job_id = bench.outbox.enqueue(report_for(STUDY, "ACC404", make_patient(404)))
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.FAILED and "not in the PACS" in (job.last_error or "")


def test_registry_unreachable_is_transient(bench: Bench, exam: GeneratedStudy) -> None:
    dead = XdsClient(XdsEndpoints("http://127.0.0.1:9/xds/registry", "http://127.0.0.1:9/xds/repository"),
                     httpx.Client(timeout=2))
    bench.publisher.xds = dead
    job_id = bench.outbox.enqueue(_report(exam))
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.FAILED and "ConnectError" in (job.last_error or "")


def test_registry_refusal_is_permanent(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.publisher.vihf = None  # no VIHF assertion: the registry refuses the request
    job_id = bench.outbox.enqueue(report)
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.DEAD_LETTER, job


def test_publication_schedules_the_configured_refreshes(bench: Bench, exam: GeneratedStudy) -> None:
    bench.publisher.refresh_after_s = (3600.0,)
    bench.outbox.enqueue(_report(exam))
    bench.run()
    (refresh,) = bench.outbox.jobs([JobState.PENDING])
    assert refresh.kind is JobKind.REFRESH and refresh.not_before > refresh.created + 3500


# -- patient identity change (issue #5: "a change of patient identity republishes or deprecates") --


class _Crash(BaseException):
    """A simulated process death: not an Exception, so the worker does not settle the job."""


class _RaisingPlan(CrashPlan):
    """The crash-point plan of the node, dying by exception instead of ``os._exit`` (in-process tests)."""

    def reach(self, point: CrashPoint) -> None:
        if point is self.point:
            raise _Crash(point.value)


def _entries_of(bench: Bench, report: ImagingReport, patient_id: str,
                statuses: tuple[str, ...] = (STATUS.APPROVED,)) -> list[RegistryDocument]:
    """The exam's KOS entries under one patient (the VIHF resource-id must be that patient)."""
    assertion = bench.vihf.issue(VihfSubject(report.author, ROLE, SPECIALTY, patient_id))
    return bench.xds.find_documents(
        FindDocumentsQuery(patient_id, statuses=statuses, reference_ids=(dmp.study_reference(STUDY),),
                           type_codes=(KOS_TYPE,)), assertion=assertion)


def _new_ins(report: ImagingReport, version: int) -> ImagingReport:
    """Version ``version`` of the report, for the same exam, under another qualified INS (a merge)."""
    other = make_patient(1004)
    patient = dataclasses.replace(report.patient, ins=other.ins, ins_oid=other.ins_oid)
    return dataclasses.replace(report, patient=patient, version_number=version, message_control_id=f"MSG{version}")


def _assert_moved(bench: Bench, exam: GeneratedStudy, old: ImagingReport, new: ImagingReport) -> RegistryDocument:
    """The old patient's KOS deprecated, exactly one approved under the new patient, referencing the exam."""
    old_pid, new_pid = dmp.patient_cx(old.patient), dmp.patient_cx(new.patient)
    assert old_pid != new_pid
    assert _entries_of(bench, old, old_pid) == []
    assert len(_entries_of(bench, old, old_pid, (STATUS.DEPRECATED,))) == 1
    (current,) = _entries_of(bench, new, new_pid)  # exactly one approved KOS for the exam, across both
    assert current.patient_id == new_pid
    assert referenced_instances(retrieve_kos(bench, new, current)) == {i.sop_instance_uid for i in exam.instances}
    return current


def test_ins_change_deprecates_under_the_old_patient_and_publishes_under_the_new(
        bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    (first,) = _entries_of(bench, report, dmp.patient_cx(report.patient))
    moved = _new_ins(report, 2)
    job_id = bench.outbox.enqueue(moved)
    assert bench.run() == 1
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.DONE, job
    current = _assert_moved(bench, exam, report, moved)
    assert current.unique_id != first.unique_id
    prepared = bench.outbox.submission(job_id)
    assert prepared is not None and prepared.replaces is None  # no RPLC across patients
    exam_record = bench.outbox.exam(job.exam_key)
    assert exam_record is not None and exam_record.published is not None
    assert exam_record.published.patient_id == dmp.patient_cx(moved.patient)
    # A later republication stays under the new patient (RPLC there); the old patient is left alone.
    rejected = [exam.instances[0].sop_instance_uid]
    bench.outbox.enqueue_exam(JobKind.REJECT, STUDY, "ACC1003", detail={"rejected": rejected}, key="reject|moved")
    bench.run()
    (refreshed,) = _entries_of(bench, moved, dmp.patient_cx(moved.patient))
    assert refreshed.unique_id != current.unique_id
    assert {d.unique_id: d.status for d in _entries_of(bench, moved, dmp.patient_cx(moved.patient),
                                                       (STATUS.APPROVED, STATUS.DEPRECATED))} == {
        current.unique_id: STATUS.DEPRECATED, refreshed.unique_id: STATUS.APPROVED}
    assert _entries_of(bench, report, dmp.patient_cx(report.patient)) == []


def test_identity_downgrade_deprecates_then_dead_letters(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    pid = dmp.patient_cx(report.patient)
    downgraded = dataclasses.replace(report, version_number=2, message_control_id="MSG2", patient=dataclasses.replace(
        report.patient, status=IdentityStatus.PROVISIONAL, ins=None, ins_oid=None))
    job_id = bench.outbox.enqueue(downgraded)
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.DEAD_LETTER, job
    assert "no longer qualified" in (job.last_error or "") and "deprecated (1 entries)" in (job.last_error or "")
    assert _entries_of(bench, report, pid) == []
    assert len(_entries_of(bench, report, pid, (STATUS.DEPRECATED,))) == 1
    exam_record = bench.outbox.exam(job.exam_key)
    assert exam_record is not None and exam_record.published is None
    # The identity is qualified again in a later version: published afresh, one approved KOS.
    bench.outbox.enqueue(dataclasses.replace(report, version_number=3, message_control_id="MSG3"))
    bench.run()
    assert len(_entries_of(bench, report, pid)) == 1


def test_version_not_for_the_dmp_deprecates_then_dead_letters(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    pid = dmp.patient_cx(report.patient)
    opposed = dataclasses.replace(report, version_number=2, message_control_id="MSG2",
                                  visibility=dataclasses.replace(report.visibility, to_dmp=False))
    job_id = bench.outbox.enqueue(opposed)
    bench.run()
    job = bench.outbox.job(job_id)
    assert job is not None and job.state is JobState.DEAD_LETTER, job
    assert "not for the DMP" in (job.last_error or "") and "deprecated (1 entries)" in (job.last_error or "")
    assert _entries_of(bench, report, pid) == []
    assert len(_entries_of(bench, report, pid, (STATUS.DEPRECATED,))) == 1
    exam_record = bench.outbox.exam(job.exam_key)
    assert exam_record is not None and exam_record.published is None


def test_crash_between_deprecation_and_publication(bench: Bench, exam: GeneratedStudy) -> None:
    report = _report(exam)
    bench.outbox.enqueue(report)
    bench.run()
    bench.publisher._crash = _RaisingPlan(CrashPoint.AFTER_DEPRECATE)
    moved = _new_ins(report, 2)
    job_id = bench.outbox.enqueue(moved)
    handle = bench.outbox.claim("test-worker", 60)
    assert handle is not None and handle.job.id == job_id
    with pytest.raises(_Crash):
        bench.worker.run_one(handle)
    # The node died: the old KOS is deprecated, the new one not sent yet.
    assert _entries_of(bench, report, dmp.patient_cx(report.patient)) == []
    assert _entries_of(bench, moved, dmp.patient_cx(moved.patient)) == []
    bench.publisher._crash = CrashPlan()
    assert bench.outbox.recover() == 1
    assert bench.run() == 1
    _assert_moved(bench, exam, report, moved)
    steps = [f"{s.step}: {s.outcome}" for s in bench.outbox.steps(job_id)]
    assert sum(s.startswith("prepared") for s in steps) == 1, steps
    assert sum(s.startswith("sending") for s in steps) == 1, steps
    assert any(s.startswith("deprecated:") and "nothing approved left" in s for s in steps), steps
