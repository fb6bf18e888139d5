"""The publication pipeline (DESIGN F2-F4): one claimed outbox job, from the PACS to the registry.

Publish (a report, a refresh, an IOCM rejection)::

    walk the PACS (Study UID, else accession) → KOS (manifest builder) → ITI-18: the exam's approved
    KOS → prepare the ITI-41 (RPLC of it) and store it → ITI-41 → record → done

Withdraw: ITI-18 the exam's approved KOS (and CDA) → ITI-57 deprecate → done. A rejection that
leaves no instance deprecates too.

Patient identity change (an INS change, a merge onto another INS): the exam's approved KOS was
published under another patient id, which an RPLC may not cross (the registry refuses it,
``XDSPatientIdDoesNotMatch``). The new ITI-41 is prepared and stored first (PACS walk, KOS: what can
fail for a reason of ours fails before anything is deprecated), then the previous patient's entries
are deprecated (ITI-57 under that patient, VIHF resource-id = that patient), then the new KOS is sent
without RPLC. FindDocuments needs the patient id, so the previous one is the patient id of the exam's
last publication, kept in the outbox with its ITI-41. A retry re-asks the registry which entries are
still approved under the previous patient, so a crash between the two steps deprecates nothing twice
and still publishes the new KOS. Identity downgrade (a new version whose identity is no longer
qualified): the published KOS is deprecated the same way, the exam is left unpublished and the job
goes to the dead-letter list (the DMP cannot take an unqualified identity). A new version that is not
for the DMP (DESTDMP=N, patient opposition) is retracted the same way.

Restart rules (the outbox docstring explains why they give one approved KOS per report): a job
resumes from its recorded steps; a prepared ITI-41 is resent byte for byte; if a previous run got as
far as sending, the registry is asked first (ITI-18 GetDocuments by uniqueId) whether the KOS is
already there, so a reply lost in a crash does not lead to a second submission.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn, Protocol

import structlog
from lxml import etree
from pydicom import Dataset

from drimbox.errors import PacsError, StudyNotFound
from drimbox.manifest import ManifestError
from drimbox.pacs.models import StudyInfo
from drimbox.publish import dmp
from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.errors import (
    IdentityNotQualified,
    NotForDmp,
    NothingToPublish,
    PermanentPublishError,
    TransientPublishError,
)
from drimbox.publish.jobs import JobKind
from drimbox.publish.outbox import ExamRecord, JobHandle, Outbox, PreparedSubmission, StoredDocument
from drimbox.publish.submission import (
    DSG_TYPE,
    KOS_TYPE,
    Manifest,
    Replaced,
    SubmissionPolicy,
    build_submission,
    deprecation_set,
    derived_uid,
)
from drimbox.publish.vihf import VihfIssuer, VihfSubject
from drimbox.publish.xds.client import XdsClient
from drimbox.publish.xds.requests import DocumentPart, FindDocumentsQuery
from drimbox.publish.xds.rim import Code, RegistryDocument, parse_extrinsic_object, submit_objects_request
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.vocabulary import NS
from drimbox.reports import IdentityStatus, ImagingReport

__all__ = ["BuiltKos", "KosDocument", "KosFactory", "PacsSource", "Publisher"]

log = structlog.get_logger(__name__)

_NOT_SHARED = frozenset({"KO"})
"""Series never referenced by a manifest: key object documents (earlier manifests stored back, IOCM
rejection notes) are not images to share."""


class PacsSource(Protocol):
    """What the pipeline needs of the PACS bridge (:class:`~drimbox.pacs.PacsClient`)."""

    def walk_study(self, study_uid: str) -> StudyInfo: ...

    def find_studies(self, **keys: object) -> list[Dataset]: ...


class KosDocument(Protocol):
    """A KOS as a manifest builder returns it (:class:`drimbox.manifest.BuiltManifest`)."""

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BuiltKos:
    """A plain :class:`KosDocument`."""

    sop_instance_uid: str
    data: bytes


KosFactory = Callable[[StudyInfo, ImagingReport, int], KosDocument]
"""Builds the exam's KOS for a report; the int is the exam's KOS revision (the SOP Instance UID is
deterministic per study and revision, so a rebuilt KOS keeps its UID)."""


def _is_qualified(report: ImagingReport) -> bool:
    return (report.patient.status is IdentityStatus.QUALIFIED and bool(report.patient.ins)
            and bool(report.patient.ins_oid))


def _qualified(report: ImagingReport) -> None:
    if not _is_qualified(report):
        raise IdentityNotQualified(
            f"patient identity not qualified (PID-32 {report.patient.status.value or 'empty'}): the INS may not "
            "be used, the DMP cannot be fed")
    if not report.visibility.to_dmp:
        raise NotForDmp("the report is not for the DMP (DESTDMP=N, patient opposition)")


def _entry_uids(prepared: PreparedSubmission) -> frozenset[str]:
    """uniqueIds of the document entries of a stored ITI-41 (the KOS, the CDA if any; not the DSG)."""
    request = etree.fromstring(prepared.metadata)
    entries = (parse_extrinsic_object(eo) for eo in request.iter(f"{{{NS['rim']}}}ExtrinsicObject"))
    return frozenset(e.unique_id for e in entries
                     if e.unique_id and not (e.type_code is not None and e.type_code.code == DSG_TYPE.code))


def _filtered(study: StudyInfo, rejected: frozenset[str]) -> StudyInfo:
    series = []
    for s in study.series:
        if s.modality in _NOT_SHARED:
            continue
        kept = tuple(i for i in s.instances if i.sop_instance_uid not in rejected)
        if kept:
            series.append(dataclasses.replace(s, instances=kept))
    return dataclasses.replace(study, series=tuple(series))


class Publisher:
    """Runs outbox jobs (the :data:`~drimbox.publish.worker.JobRunner` of the node).

    Parameters
    ----------
    outbox, pacs, xds:
        The queue, the site's PACS, the registry client.
    kos_factory:
        Builds the KOS (:mod:`drimbox.manifest`).
    policy, signer, vihf:
        Metadata choices, the organisation key (DSG), the VIHF issuer (``None``: no assertion sent).
    profession:
        The author's profession in the VIHF (``10`` Médecin) and specialty.
    refresh_after_s:
        Delays of the refresh jobs queued after each publication (images arriving late).
    """

    def __init__(
        self,
        *,
        outbox: Outbox,
        pacs: PacsSource,
        xds: XdsClient,
        kos_factory: KosFactory,
        policy: SubmissionPolicy,
        signer: Signer,
        vihf: VihfIssuer | None,
        profession: Code,
        specialty: Code | None,
        refresh_after_s: tuple[float, ...] = (),
        crash: CrashPlan | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.pacs = pacs
        self.xds = xds
        self.kos_factory = kos_factory
        self.policy = policy
        self.signer = signer
        self.vihf = vihf
        self.profession = profession
        self.specialty = specialty
        self.refresh_after_s = refresh_after_s
        self._crash = crash or CrashPlan()
        self._clock = clock

    # -- entry point ------------------------------------------------------------------------------

    def __call__(self, handle: JobHandle) -> None:
        """Run one claimed job to ``complete``, or raise a :class:`PublishError` for the worker."""
        exam = self.outbox.exam(handle.job.exam_key)
        if exam is None:  # cannot happen: enqueue creates the exam row with the job
            raise NothingToPublish(f"no exam {handle.job.exam_key}")
        if handle.job.kind is JobKind.WITHDRAW:
            self._withdraw(handle, exam, "report withdrawn")
        else:
            self._publish(handle, exam)

    # -- helpers ----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _assertion(self, report: ImagingReport | None, patient_id: str | None) -> etree._Element | None:
        if self.vihf is None or report is None:
            return None
        structure = report.organisation.id_nat_struct or None
        return self.vihf.issue(VihfSubject(report.legal_authenticator or report.author, self.profession,
                                           self.specialty, patient_id, structure_id=structure))

    def _walk(self, report: ImagingReport) -> StudyInfo:
        """F2: the exam in the PACS, by Study Instance UID, else by accession number."""
        try:
            try:
                return self.pacs.walk_study(report.study_instance_uid)
            except StudyNotFound:
                # The PACS may know the exam under another Study UID: its accession number, for the
                # same patient (an accession is unique per RIS, not across sites or after merges).
                patient_ids = {report.patient.ipp, report.patient.ins} - {None, ""}
                found = [ds for ds in self.pacs.find_studies(AccessionNumber=report.accession_number)
                         if str(ds.get("PatientID", "")) in patient_ids]
                uids = {str(ds.get("StudyInstanceUID", "")) for ds in found} - {""}
                if len(uids) != 1:
                    raise TransientPublishError(
                        f"study {report.study_instance_uid} / accession {report.accession_number} not in the PACS "
                        f"yet ({len(uids)} studies by accession)") from None
                return self.pacs.walk_study(uids.pop())
        except PacsError as exc:
            if isinstance(exc, StudyNotFound):
                raise TransientPublishError(f"study not in the PACS yet: {exc}") from exc
            raise TransientPublishError(f"PACS: {exc}") from exc

    def _exam_entries(self, report: ImagingReport, patient_id: str, exam: ExamRecord,
                      type_code: Code | None = KOS_TYPE, also: frozenset[str] = frozenset()) -> list[RegistryDocument]:
        """The exam's approved entries this node may replace or deprecate (ITI-18 by reference id).

        ``also``: more uniqueIds of ours (the entries of an earlier submission, its CDA).
        """
        study = dmp.study_reference(report.study_instance_uid)
        query = FindDocumentsQuery(patient_id=patient_id, reference_ids=(study,),
                                   type_codes=(type_code,) if type_code else ())
        found = self.xds.find_documents(query, assertion=self._assertion(report, patient_id))
        ours = set(exam.kos_uids) | set(also) | ({report.document_id} if self.policy.publish_cda else set())
        accession = dmp.accession_reference(report.accession_number,
                                            report.accession_issuer or self.policy.accession_issuer)

        def exams(d: RegistryDocument) -> bool:
            # Ours; or a KOS of the same study *and* accession this outbox does not know (published
            # before a reinstall). Never another producer's document (the RIS's own CDA in the DMP).
            kos = d.type_code is not None and d.type_code.code == KOS_TYPE.code
            return d.unique_id in ours or (kos and accession in d.reference_ids)

        return [d for d in found if d.approved and exams(d)]

    # -- publish ----------------------------------------------------------------------------------

    def _publish(self, handle: JobHandle, exam: ExamRecord) -> None:
        job = handle.job
        report = job.report if job.kind is JobKind.PUBLISH else exam.report
        if report is None:
            raise NothingToPublish(f"no report received for exam {job.exam_key}: a KOS needs its patient and author")
        published = exam.published
        if published is not None and published.report_version > report.version_number:
            handle.complete(f"superseded: version {published.report_version} is published")
            return
        if published is not None and not _is_qualified(report):
            status = report.patient.status.value or "empty"
            self._retract(handle, report, exam, published, IdentityNotQualified,
                          f"patient identity no longer qualified (PID-32 {status})",
                          "the DMP cannot take an unqualified identity, publish again once the RIS sends a "
                          "qualified INS")
        if published is not None and not report.visibility.to_dmp:
            self._retract(handle, report, exam, published, NotForDmp,
                          "the new version is not for the DMP (DESTDMP=N, patient opposition)",
                          "the exam stays out of the DMP until a version for it is received")
        _qualified(report)
        prepared = self.outbox.submission(job.id)
        if prepared is None:
            prepared = self._prepare(handle, exam, report)
            if prepared is None:
                return  # settled inside (unchanged, or nothing left to publish)
        if published is not None and published.patient_id != prepared.patient_id:
            # Deprecate first, then publish: never two approved KOS of one exam, one per patient.
            self._leave_patient(handle, report, exam, published, f"patient identity changed to {prepared.patient_id}")
            self._crash.reach(CrashPoint.AFTER_DEPRECATE)
        self._send(handle, report, prepared)
        self._crash.reach(CrashPoint.BEFORE_DONE)
        if any(uid != prepared.kos_uid for uid in exam.kos_uids):  # only an exam published before can have others
            self._deprecate_others(handle, report, exam, prepared)
        handle.complete(f"published KOS {prepared.kos_uid}"
                        + (f" replacing {prepared.replaces}" if prepared.replaces else ""), published=True)
        for delay in self.refresh_after_s:
            self.outbox.enqueue_exam(JobKind.REFRESH, job.study_instance_uid, job.accession_number, delay_s=delay,
                                     key=f"refresh|{job.id}|{delay}")

    def _prepare(self, handle: JobHandle, exam: ExamRecord, report: ImagingReport) -> PreparedSubmission | None:
        job = handle.job
        rejected = frozenset(job.detail.get("rejected", ()))
        study = _filtered(self._walk(report), rejected)
        instances = tuple(sorted(study.sop_instance_uids()))
        handle.step("walked", f"{len(study.series)} series, {len(instances)} instances")
        if not instances:
            if job.kind is JobKind.PUBLISH:
                raise TransientPublishError(f"study {study.study_instance_uid} has no image in the PACS yet")
            self._withdraw(handle, exam, "no instance remains in the PACS")
            return None
        published = exam.published
        patient_id = dmp.patient_cx(report.patient)
        if (published is not None and published.report_version == report.version_number
                and published.instances == instances and published.patient_id == patient_id):
            handle.complete(f"unchanged: KOS {published.kos_uid} already references these {len(instances)} instances")
            return None
        previous = self._exam_entries(report, patient_id, exam)
        current = published.kos_uid if published else None
        target = next((d for d in previous if d.unique_id == current), previous[-1] if previous else None)
        revision = handle.reserve_revision()
        try:
            kos = self.kos_factory(study, report, revision)
        except ManifestError as exc:  # the same inputs would fail again: an operator must look
            raise PermanentPublishError(f"KOS not built: {type(exc).__name__}: {exc}") from exc
        manifest = Manifest(
            sop_instance_uid=kos.sop_instance_uid, data=kos.data, instances=instances,
            modalities=tuple(dict.fromkeys(s.modality for s in study.series)),
            body_parts=tuple(dict.fromkeys(str(s.identifier.get("BodyPartExamined", "") or "") for s in study.series)),
            study_description=str(study.identifier.get("StudyDescription", "") or "") or None,
            study_start=dmp.dicom_local_datetime(str(study.identifier.get("StudyDate", "") or ""),
                                                 str(study.identifier.get("StudyTime", "") or ""), self.policy.zone),
        )
        submission_uid = derived_uid("submission", job.key, str(revision))
        cda_target = None
        if self.policy.publish_cda and target is not None:
            cda_entries = self._exam_entries(report, patient_id, exam, type_code=None)
            cda_target = next((d.entry_uuid for d in cda_entries if d.mime_type == "text/xml"
                               and d.type_code is not None and d.type_code.code != "E1762"), None)
        built = build_submission(report, manifest, self.policy, self.signer, submission_uid=submission_uid,
                                 now=self._now(), replaces=Replaced(kos=target.entry_uuid if target else None,
                                                                    cda=cda_target))
        prepared = PreparedSubmission(
            kos_uid=kos.sop_instance_uid, entry_uuid=built.submission.entries[0].entry_uuid,
            submission_uid=submission_uid, patient_id=patient_id, replaces=target.entry_uuid if target else None,
            instances=instances, report_version=report.version_number,
            metadata=bytes(etree.tostring(submit_objects_request(built.submission))),
            documents=tuple(StoredDocument(p.doc_id, p.mime_type, p.content) for p in built.documents),
        )
        handle.save_submission(prepared)
        return prepared

    def _registered(self, report: ImagingReport, prepared: PreparedSubmission) -> bool:
        found = self.xds.get_documents(unique_ids=[prepared.kos_uid],
                                       assertion=self._assertion(report, prepared.patient_id))
        return any(d.unique_id == prepared.kos_uid for d in found)

    def _send(self, handle: JobHandle, report: ImagingReport, prepared: PreparedSubmission) -> None:
        steps = {s.step for s in self.outbox.steps(handle.job.id)}
        if "registered" in steps:
            return
        if "sending" in steps and self._registered(report, prepared):
            handle.step("registered", "found in the registry (the reply to an earlier send was lost)")
            return
        handle.step("sending", f"ITI-41 {prepared.submission_uid}")
        warnings = self.xds.provide_and_register(
            etree.fromstring(prepared.metadata),
            [DocumentPart(d.doc_id, d.mime_type, d.content) for d in prepared.documents],
            assertion=self._assertion(report, prepared.patient_id),
        )
        self._crash.reach(CrashPoint.AFTER_SEND)
        handle.step("registered", "ITI-41 Success" + (f" ({len(warnings)} warnings)" if warnings else ""))

    def _deprecate_others(self, handle: JobHandle, report: ImagingReport, exam: ExamRecord,
                          prepared: PreparedSubmission) -> None:
        """Self-healing: any other approved KOS of the exam is deprecated (one approved KOS per exam)."""
        others = [d for d in self._exam_entries(report, prepared.patient_id, exam)
                  if d.unique_id != prepared.kos_uid and d.unique_id in exam.kos_uids]
        if others:
            self._deprecate(handle, report, prepared.patient_id, [d.entry_uuid for d in others], "superseded KOS")

    # -- patient identity change ------------------------------------------------------------------

    def _leave_patient(self, handle: JobHandle, report: ImagingReport, exam: ExamRecord,
                       published: PreparedSubmission, why: str) -> int:
        """ITI-57 under the previous patient of every entry of the exam still approved there; how many.

        Asked again on every run: after a crash, the entries already deprecated are not found again.
        """
        entries = self._exam_entries(report, published.patient_id, exam, type_code=None,
                                     also=_entry_uids(published))
        targets = [d.entry_uuid for d in entries]
        if targets:
            self._deprecate(handle, report, published.patient_id, targets, f"{why}: previous patient")
        else:
            handle.step("deprecated", f"{why}: nothing approved left under {published.patient_id}")
        return len(targets)

    def _retract(self, handle: JobHandle, report: ImagingReport, exam: ExamRecord, published: PreparedSubmission,
                 error: type[PermanentPublishError], why: str, then: str) -> NoReturn:
        """The exam may no longer be in the DMP: deprecate what was published, then dead-letter the job."""
        count = self._leave_patient(handle, report, exam, published, why)
        handle.unpublish(f"KOS {published.kos_uid} deprecated: {why}")
        raise error(f"{why}: the exam's KOS published under {published.patient_id} was deprecated "
                    f"({count} entries); {then}")

    # -- withdraw ---------------------------------------------------------------------------------

    def _deprecate(self, handle: JobHandle, report: ImagingReport | None, patient_id: str, entry_uuids: list[str],
                   why: str) -> None:
        submission_uid = derived_uid("deprecation", handle.job.key, *entry_uuids)
        submission_set = deprecation_set(report, patient_id, self.policy, submission_uid=submission_uid,
                                         now=self._now())
        self.xds.update_status(submission_set, entry_uuids, assertion=self._assertion(report, patient_id))
        handle.step("deprecated", f"{why}: {', '.join(entry_uuids)}")

    def _withdraw(self, handle: JobHandle, exam: ExamRecord, why: str) -> None:
        report = handle.job.report or exam.report
        patient_id = exam.published.patient_id if exam.published else None
        if patient_id is None and report is not None and report.patient.ins and report.patient.ins_oid:
            patient_id = dmp.patient_cx(report.patient)
        if patient_id is None or report is None:
            handle.complete(f"{why}: nothing was published for this exam", withdrawn=True)
            return
        entries = self._exam_entries(report, patient_id, exam, type_code=None)
        targets = [d.entry_uuid for d in entries]  # KOS (and our CDA); signatures stay with their set
        if targets:
            self._deprecate(handle, report, patient_id, targets, why)
        handle.complete(f"{why}: {len(targets)} entries deprecated", withdrawn=True)
