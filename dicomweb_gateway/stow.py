"""STOW-RS: Store Transaction (PS3.18 §10.5) — streamed parse, one instance at a time to the store.

The body is parsed as it arrives (:func:`dicomweb_gateway.multipart.spool_parts`); each part is
spooled to a temp file, identified, handed to ``DicomStore.store`` and deleted, so memory stays
bounded and the PACS receives the first instance while the client is still sending the last.

Response (PS3.18 Table 10.5.3-1, §10.5.3.1), a Store Instances Response in DICOM JSON:

=======  =====================================================================================
200      every instance stored as sent
202      some stored, or stored with coercion warnings; failures listed in FailedSOPSequence
409      none stored, for reasons inside the request (unreadable part, wrong study, refused)
400      malformed request: no/invalid boundary, truncated body, bad part headers, no instance
413      body or part count over the configured limits
415      not ``multipart/related; type="application/dicom"``
503      the store was unreachable for every instance (with ``Retry-After``)
=======  =====================================================================================

A part whose Study Instance UID differs from the one in the URL fails with Processing Failure
(0x0110): PS3.4 has no dedicated code and the instance is well-formed, just addressed wrongly.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence
from starlette.concurrency import run_in_threadpool

from dicomweb_gateway.backend import DicomStore, FailureReason, StoreOutcome, StoreStatus
from dicomweb_gateway.deps import BaseUrlDep, SettingsDep, StoreDep
from dicomweb_gateway.dicomjson import dumps
from dicomweb_gateway.errors import (
    BackendError,
    BackendUnavailable,
    InvalidQuery,
    MalformedMultipart,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from dicomweb_gateway.multipart import SpooledPart, spool_parts
from dicomweb_gateway.negotiation import parse_accept
from dicomweb_gateway.part10 import READ_ERRORS, length_problem
from dicomweb_gateway.settings import GatewaySettings
from dicomweb_gateway.uids import check_uid

__all__ = ["StoreReport", "create_stow_router", "parse_stow_content_type"]

_log = logging.getLogger(__name__)
_ACCEPTED_PART_TYPES = ("application/dicom",)


def parse_stow_content_type(value: str | None) -> str:
    """Check the request's ``Content-Type`` and return its boundary.

    Raises
    ------
    UnsupportedMediaType
        Not ``multipart/related`` with part type ``application/dicom`` (415).
    MalformedMultipart
        No boundary parameter (400).
    """
    if not value:
        raise UnsupportedMediaType('STOW-RS needs Content-Type: multipart/related; type="application/dicom"')
    try:
        media = parse_accept(value)[0]
    except InvalidQuery as exc:
        raise MalformedMultipart(f"malformed Content-Type: {exc}") from None
    if (media.type, media.subtype) != ("multipart", "related"):
        raise UnsupportedMediaType(f"STOW-RS accepts multipart/related bodies, not {media.type}/{media.subtype}")
    part_type = (media.param("type") or "application/dicom").lower()
    if part_type not in _ACCEPTED_PART_TYPES:
        raise UnsupportedMediaType(
            f'multipart/related; type="{part_type}" is not supported: send type="application/dicom" (Part 10 files)'
        )
    boundary = media.param("boundary")
    if not boundary:
        raise MalformedMultipart("Content-Type multipart/related has no boundary parameter")
    return boundary


@dataclass(frozen=True)
class _Stored:
    study: str
    series: str
    sop_class: str
    sop_instance: str
    outcome: StoreOutcome


@dataclass
class StoreReport:
    """What happened to each part, and the Store Instances Response it makes."""

    stored: list[_Stored] = field(default_factory=list)
    failed: list[tuple[str, str, FailureReason]] = field(default_factory=list)
    unavailable: int = 0
    messages: list[str] = field(default_factory=list)

    def status(self) -> int:
        """HTTP status per PS3.18 Table 10.5.3-1."""
        if not self.stored:
            if self.failed and self.unavailable == len(self.failed):
                return 503
            return 409
        warned = any(s.outcome.status == StoreStatus.WARNING for s in self.stored)
        return 202 if self.failed or warned else 200

    def response_dataset(self, base_url: str, study_uid: str | None) -> Dataset:
        """The Store Instances Response (PS3.18 §10.5.3.1, Table 10.5.3-2)."""
        ds = Dataset()
        studies = {s.study for s in self.stored} if study_uid is None else {study_uid}
        if len(studies) == 1:
            ds.RetrieveURL = f"{base_url}/studies/{next(iter(studies))}"
        if self.failed:
            ds.FailedSOPSequence = Sequence([_failed_item(c, i, r) for c, i, r in self.failed])
        if self.stored:
            ds.ReferencedSOPSequence = Sequence([_stored_item(base_url, s) for s in self.stored])
        return ds


def _failed_item(sop_class: str, sop_instance: str, reason: FailureReason) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    item.FailureReason = int(reason)
    return item


def _stored_item(base_url: str, stored: _Stored) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = stored.sop_class
    item.ReferencedSOPInstanceUID = stored.sop_instance
    item.RetrieveURL = f"{base_url}/studies/{stored.study}/series/{stored.series}/instances/{stored.sop_instance}"
    if stored.outcome.status == StoreStatus.WARNING and stored.outcome.warning_reason is not None:
        item.WarningReason = int(stored.outcome.warning_reason)
    return item


def _identify(part: SpooledPart) -> tuple[str, str, str, str] | None:
    """(study, series, SOP class, SOP instance) of a spooled Part 10 file, or ``None`` if unreadable."""
    try:
        ds = dcmread(part.path, stop_before_pixels=True)
        # pydicom decodes values lazily: decode every header value now (nested ones too), so that a
        # value the store would choke on later (an unknown VR, a wrong length) is refused here.
        ds.walk(lambda _ds, _elem: None)
        keys = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        # A value cut short or declared longer than the file (a "4 GiB" element) is read leniently by
        # pydicom; the store would keep a corrupt instance: refuse it here.
        with part.path.open("rb") as fp:
            if length_problem(fp, part.size, ds) is not None:
                return None
        return keys
    except READ_ERRORS:
        return None


def _store_part(store: DicomStore, part: SpooledPart, study_uid: str | None, report: StoreReport) -> None:
    """Identify, check and store one part (runs in a worker thread)."""
    part_type = part.content_type.split(";")[0].strip().lower()
    if part_type not in _ACCEPTED_PART_TYPES:
        report.failed.append(("", "", FailureReason.CANNOT_UNDERSTAND))
        report.messages.append(f"part {part.index} is {part_type}, not application/dicom")
        return
    keys = _identify(part)
    if keys is None:
        report.failed.append(("", "", FailureReason.CANNOT_UNDERSTAND))
        report.messages.append(f"part {part.index} is not a readable DICOM Part 10 file")
        return
    study, series, sop_class, sop_instance = keys
    if study_uid is not None and study != study_uid:
        report.failed.append((sop_class, sop_instance, FailureReason.PROCESSING_FAILURE))
        report.messages.append(f"instance {sop_instance} belongs to study {study}, not {study_uid}")
        return
    try:
        outcome = store.store(part.path)
    except BackendUnavailable as exc:
        report.failed.append((sop_class, sop_instance, FailureReason.OUT_OF_RESOURCES))
        report.unavailable += 1
        report.messages.append(str(exc))
        return
    except BackendError as exc:
        report.failed.append((sop_class, sop_instance, FailureReason.PROCESSING_FAILURE))
        report.messages.append(str(exc))
        return
    if outcome.status == StoreStatus.FAILED:
        report.failed.append((sop_class, sop_instance, outcome.failure_reason or FailureReason.PROCESSING_FAILURE))
        report.messages.append(outcome.message or f"instance {sop_instance} refused")
    else:
        report.stored.append(_Stored(study, series, sop_class, sop_instance, outcome))


async def _stow(
    request: Request, store: DicomStore, settings: GatewaySettings, base_url: str, study_uid: str | None
) -> Response:
    boundary = parse_stow_content_type(request.headers.get("content-type"))
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_stow_bytes:
        raise PayloadTooLarge(f"request body of {length} bytes is over the {settings.max_stow_bytes}-byte limit")
    report = StoreReport()
    parts = 0
    async for part in spool_parts(
        request.stream(), boundary, max_bytes=settings.max_stow_bytes, max_parts=settings.max_stow_parts,
        directory=settings.spool_dir,
    ):  # fmt: skip
        parts += 1
        try:
            await run_in_threadpool(_store_part, store, part, study_uid, report)
        finally:
            with contextlib.suppress(OSError):
                part.path.unlink()
    if parts == 0:
        raise MalformedMultipart("the request carries no instance")
    status = report.status()
    if status == 503:
        raise BackendUnavailable("; ".join(dict.fromkeys(report.messages)) or "store unavailable")
    body = report.response_dataset(base_url, study_uid).to_json_dict()
    headers = {}
    if report.messages:
        text = "; ".join(report.messages)[:300].replace('"', "'")
        headers["Warning"] = f'299 {request.url.netloc or "-"}: "{text.encode("ascii", "replace").decode()}"'
    return Response(dumps(body), status_code=status, media_type="application/dicom+json", headers=headers)


def create_stow_router() -> APIRouter:
    """The STOW-RS routes (PS3.18 §10.5.1, Table 10.5.1-1)."""
    router = APIRouter(tags=["STOW-RS"])

    @router.post("/studies")
    async def store_instances(request: Request, store: StoreDep, settings: SettingsDep, base: BaseUrlDep) -> Response:
        """Store instances of any studies."""
        return await _stow(request, store, settings, base, None)

    @router.post("/studies/{study}")
    async def store_study_instances(
        request: Request, study: str, store: StoreDep, settings: SettingsDep, base: BaseUrlDep
    ) -> Response:
        """Store instances of one study."""
        return await _stow(request, store, settings, base, check_uid(study, "StudyInstanceUID"))

    return router
