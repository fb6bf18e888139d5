"""The site face's XDM endpoints (F10): export a retrieved exam as an XDM zip, import an uploaded one.

- ``GET /api/xdm/export?kos=<KOS SOP Instance UID>`` streams the zip of an exam already retrieved
  into ``retrieve.work_dir/<kos>/`` (the retriever's layout). The archive is produced by a worker
  thread into a bounded queue while the response sends it: the first bytes leave at once, memory
  stays bounded whatever the study's size, and a client that goes away stops the export.
- ``POST /api/xdm/import`` takes the archive as the raw request body (``Content-Type:
  application/zip``), streamed to a spool file with a size limit (413 beyond), then
  :func:`~drimbox.retrieve.xdm.read_xdm` judges it (400 with every problem) and the importer stores
  it into the local PACS. ``?ins=…&ins_oid=…&local_id=…`` give the patient's INS when the archive
  carries none.

Both are site-facing only (a site user's session or token): mounted through ``include_protected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from drimbox.errors import DrimboxError, InvalidRequest
from drimbox.retrieve.jobs import count_of
from drimbox.retrieve.xdm import (
    DEFAULT_LIMITS,
    ExportLookup,
    XdmImporter,
    XdmLimits,
    XdmOrigin,
    export_xdm,
    read_xdm,
    source_from_directory,
    traits_from_contents,
)
from drimbox.trust import Authenticated
from drimbox.trust.audit import AuditEvent, AuditTrail

__all__ = ["XdmImportResult", "xdm_router"]

log = structlog.get_logger(__name__)

_UID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*)){1,63}$")
_QUEUE_CHUNKS = 16
_CHUNK_HINT = 256 * 1024


class XdmImportResult(BaseModel):
    """The answer to an import: what the archive held and what the PACS took."""

    instances: int
    kos_uid: str | None
    report_mime: str | None
    patient_id: str
    warnings: list[str]
    imported: int
    committed: int


class _Closed(Exception):
    """The client went away: the export thread stops writing."""


@dataclass
class _QueueWriter:
    """A write-only file whose bytes go, in chunks, to the response that reads the queue."""

    chunks: queue.Queue[bytes | BaseException | None]
    cancelled: threading.Event

    def __post_init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= _CHUNK_HINT:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._put(bytes(self._buffer))
            self._buffer.clear()

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self.cancelled.is_set():
                raise _Closed
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=0.5)
                return

    def close(self, error: BaseException | None = None) -> None:
        with contextlib.suppress(_Closed):
            if error is None:
                self.flush()
            self._put(error)


def xdm_router(
    *,
    origin: XdmOrigin,
    work_dir: Path,
    importer: XdmImporter[Any] | None,
    spool_dir: Path,
    audit: AuditTrail | None = None,
    lookup: ExportLookup | None = None,
    limits: XdmLimits = DEFAULT_LIMITS,
    max_upload_bytes: int = 8 * 1024**3,
) -> APIRouter:
    """``GET /api/xdm/export`` and ``POST /api/xdm/import``.

    Parameters
    ----------
    origin
        The writing site (:meth:`XdmOrigin.from_settings`).
    work_dir
        Where the retriever keeps exams (``retrieve.work_dir``; ``<work_dir>/<kos_uid>/``).
    importer
        :class:`drimbox.retrieve.importer.StudyImporter` (``None``: imports answer 503).
    spool_dir
        Uploads and their extraction (created if needed; each request cleans its own files).
    lookup
        KOS UID → what the consumer knows beyond the files (exam entry, KOS bytes, traits, report);
        when it returns ``None`` (or is not given) the export is made from the directory alone.
    """
    router = APIRouter(prefix="/api/xdm", tags=["xdm"])

    @router.get("/export", response_class=StreamingResponse,
                responses={200: {"content": {"application/zip": {}}}})
    def export(kos: str, principal: Authenticated) -> StreamingResponse:
        """The XDM zip of a retrieved exam (``kos`` = its KOS SOP Instance UID), streamed."""
        if not _UID.match(kos):
            raise InvalidRequest("kos is not a UID", problems=(f"kos: {kos[:80]!r} is not a DICOM UID",))
        directory = work_dir / kos
        if not directory.is_dir():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"exam {kos} has not been retrieved to this node")
        source = (lookup(kos) if lookup is not None else None) or source_from_directory(directory)
        chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        cancelled = threading.Event()
        writer = _QueueWriter(chunks, cancelled)

        def produce() -> None:
            error: BaseException | None = None
            try:
                export_xdm(source.exam, source.files, writer, origin=origin, traits=source.traits,  # type: ignore[arg-type]
                           report=source.report, report_mime=source.report_mime, kos=source.kos)
            except _Closed:
                return
            except BaseException as exc:  # sent to the reader, which ends the response
                log.exception("xdm export failed", kos=kos)
                error = exc
            writer.close(error)

        def body() -> Iterator[bytes]:
            thread = threading.Thread(target=produce, name=f"xdm-export-{kos[-8:]}", daemon=True)
            thread.start()
            try:
                while (item := chunks.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancelled.set()
                thread.join(timeout=5)

        if audit is not None:
            audit.record(AuditEvent.by(principal, "xdm.export", "success", study_uid=source.exam.study_uid,
                                       kos_uid=kos, patient_ins=source.traits.ins if source.traits else None))
        filename = f"XDM-{(source.exam.accession_number or kos[-12:])}.zip"
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
        return StreamingResponse(body(), media_type="application/zip",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @router.post("/import", response_model=XdmImportResult)
    async def import_(request: Request, principal: Authenticated, ins: str | None = None,
                      ins_oid: str | None = None, local_id: str | None = None,
                      local_issuer: str | None = None) -> XdmImportResult:
        """Import an XDM zip (raw body) into the local PACS; 400 lists every problem of a refused archive."""
        if importer is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no importer configured on this node")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"archive larger than {max_upload_bytes}")
        spool_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="xdm-upload-", dir=spool_dir))
        try:
            archive = scratch / "upload.zip"
            received = 0
            with archive.open("wb") as out:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > max_upload_bytes:
                        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                            f"archive larger than {max_upload_bytes}")
                    await asyncio.to_thread(out.write, chunk)
            return await asyncio.to_thread(_import, archive, scratch, principal, ins, ins_oid, local_id,
                                           local_issuer)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    def _import(archive: Path, scratch: Path, principal: Any, ins: str | None, ins_oid: str | None,
                local_id: str | None, local_issuer: str | None) -> XdmImportResult:
        assert importer is not None
        try:
            contents = read_xdm(archive, scratch, limits=limits)
            traits = traits_from_contents(contents, ins=ins, ins_oid=ins_oid, local_id=local_id,
                                          local_issuer=local_issuer)
            outcome = importer.import_study(sorted(contents.instances.values()), traits)
        except DrimboxError as exc:
            if audit is not None:
                if isinstance(exc, InvalidRequest):
                    event = AuditEvent.by(principal, "xdm.import", "refused", detail="; ".join(exc.problems)[:2000])
                else:
                    event = AuditEvent.by(principal, "xdm.import", "failure", detail=str(exc)[:2000])
                audit.record(event)
            raise
        imported, committed = count_of(getattr(outcome, "stored", 0)), count_of(getattr(outcome, "committed", 0))
        if audit is not None:
            audit.record(AuditEvent.by(principal, "xdm.import", "success", kos_uid=contents.kos_uid,
                                       patient_ins=traits.ins if traits else None,
                                       detail=f"{len(contents.instances)} instances, {committed} committed"))
        return XdmImportResult(instances=len(contents.instances), kos_uid=contents.kos_uid,
                               report_mime=contents.report_mime, patient_id=contents.patient_id,
                               warnings=list(contents.warnings), imported=imported, committed=committed)

    return router
