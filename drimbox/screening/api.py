"""The screening REST API (site face, ``/api/screening/…``) and the node-to-node routes (network face,
``/screening/…``). Both routers are included through the one authentication dependency; every answer
carries the pilot's label (header ``X-Screening-Pilot``).

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
signatures at run time.
"""

import asyncio
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from drimbox.screening.metrics import dashboard, dashboard_csv
from drimbox.screening.model import (
    Assignment,
    CaseStatus,
    L2ReadingIn,
    PatientRef,
    Priority,
    Reading,
    ScreeningRequestIn,
    is_discordant,
)
from drimbox.screening.service import ScreeningService
from drimbox.screening.store import CaseRow, RequestRow, ResultRow
from drimbox.trust.deps import Authenticated, actor_of

__all__ = ["CaseOut", "DashboardOut", "RequestOut", "ResultOut", "network_router", "site_router"]

PILOT_HEADER = "X-Screening-Pilot"


class RequestOut(BaseModel):
    """A second-read request as the programme keeps it."""

    id: str
    status: CaseStatus
    created_at: datetime
    study_uid: str
    kos_uid: str
    patient: PatientRef
    l1: Reading
    single_breast: Literal["R", "L"] | None
    priority: Priority
    reader_rpps: str | None
    assigned_at: datetime | None
    l2: Reading | None
    result_at: datetime | None
    discordant: bool | None
    delivery_error: str | None

    @classmethod
    def of(cls, row: RequestRow) -> "RequestOut":
        return cls(id=row.id, status=CaseStatus(row.status), created_at=row.created_at, study_uid=row.study_uid,
                   kos_uid=row.kos_uid, patient=PatientRef.model_validate(row.patient),
                   l1=Reading.model_validate(row.l1), single_breast=row.single_breast,  # type: ignore[arg-type]
                   priority=row.priority, reader_rpps=row.reader_rpps,  # type: ignore[arg-type]
                   assigned_at=row.assigned_at, l2=Reading.model_validate(row.l2) if row.l2 else None,
                   result_at=row.result_at, discordant=row.discordant, delivery_error=row.delivery_error)


class CaseOut(BaseModel):
    """A case on a reader's worklist."""

    id: str
    status: CaseStatus
    ready: bool = Field(description="the exam and its priors are in this node's cache")
    received_at: datetime
    age_s: float = Field(description="seconds since the programme's request")
    priority: Priority
    study_uid: str
    patient: PatientRef
    priors: list[str]
    prefetch_error: str | None
    l2: Reading | None
    discordant: bool | None = Field(description="known once the second reading is recorded")
    delivery_error: str | None

    @classmethod
    def of(cls, row: CaseRow, now: datetime) -> "CaseOut":
        assignment = Assignment.model_validate(row.assignment)
        l2 = Reading.model_validate(row.l2) if row.l2 else None
        return cls(id=row.id, status=CaseStatus(row.status), ready=row.prefetched_at is not None,
                   received_at=row.received_at, age_s=(now - assignment.requested_at).total_seconds(),
                   priority=assignment.priority, study_uid=assignment.study_uid, patient=assignment.patient,
                   priors=[p["study_uid"] for p in row.priors.get("studies", [])], prefetch_error=row.prefetch_error,
                   l2=l2, discordant=is_discordant(assignment.l1, l2) if l2 else None,
                   delivery_error=row.delivery_error)


class ResultOut(BaseModel):
    """A second-read result received by the L1 site."""

    request_id: str
    received_at: datetime
    study_uid: str
    ins: str
    l1: Reading
    l2: Reading
    discordant: bool

    @classmethod
    def of(cls, row: ResultRow) -> "ResultOut":
        return cls(request_id=row.id, received_at=row.received_at, study_uid=row.study_uid, ins=row.ins,
                   l1=Reading.model_validate(row.l1), l2=Reading.model_validate(row.l2), discordant=row.discordant)


class ReaderLoadOut(BaseModel):
    rpps: str
    open: int
    done: int


class DashboardOut(BaseModel):
    """The programme's figures (turnaround: request → result, seconds; p90 interpolated, PERCENTILE.INC)."""

    pilot: str
    counts: dict[str, int]
    completed: int
    turnaround_median_s: float | None
    turnaround_p90_s: float | None
    discordant: int
    readers: list[ReaderLoadOut]


class AssignIn(BaseModel):
    """Whom to give the case to; no RPPS: the next reader round-robin (never the exam's L1 reader)."""

    reader_rpps: Annotated[str | None, Field(pattern=r"^[0-9]{11}$")] = None


class OpenOut(BaseModel):
    viewer_url: str


class StatusIn(BaseModel):
    status: CaseStatus


class GrantIn(BaseModel):
    """The programme asks this source node to grant a reader's node one KOS it publishes."""

    kos_uid: Annotated[str, Field(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", max_length=64)]
    reader_node: Annotated[str, Field(pattern=r"^https://", max_length=300)]
    request_id: Annotated[str, Field(min_length=1, max_length=64)]


def _token(request: Request, principal: Authenticated) -> str:
    return actor_of(request, principal).token


Token = Annotated[str, Depends(_token)]


def _pilot_header(service: ScreeningService) -> dict[str, str]:
    # Header values are latin-1: the label is sent percent-encoded (RFC 8187 style, UTF-8).
    return {PILOT_HEADER: quote(service.config.label, safe=" ()-—,'")}


def site_router(service: ScreeningService) -> APIRouter:
    """``/api/screening``: requests and assignment (programme), worklist and reading (reader), results (L1)."""
    pilot = _pilot_header(service)

    def mark(response: Response) -> None:
        response.headers.update(pilot)

    router = APIRouter(prefix="/api/screening", tags=["screening (pilot)"], dependencies=[Depends(mark)])

    @router.post("/requests", response_model=RequestOut, status_code=201)
    async def create_request(body: ScreeningRequestIn, principal: Authenticated, token: Token) -> RequestOut:
        """Request a second read of a published screening mammography (programme role)."""
        row = await asyncio.to_thread(service.create_request, body, principal, token)
        return RequestOut.of(row)

    @router.get("/requests", response_model=list[RequestOut])
    def list_requests(principal: Authenticated, status: CaseStatus | None = None) -> list[RequestOut]:
        """The programme's requests, oldest first."""
        service._require_programme()
        return [RequestOut.of(r) for r in service.store.requests(status=status.value if status else None)]

    @router.get("/requests/{request_id}", response_model=RequestOut)
    def get_request(request_id: str, principal: Authenticated) -> RequestOut:
        """One request, with its result when there is one."""
        service._require_programme()
        return RequestOut.of(service.request(request_id))

    @router.post("/requests/{request_id}/assign", response_model=RequestOut)
    async def assign(request_id: str, body: AssignIn, principal: Authenticated, token: Token) -> RequestOut:
        """Assign the case to a second reader (named, or round-robin) and send it to the reader's node."""
        row = await asyncio.to_thread(service.assign, request_id, body.reader_rpps, principal, token)
        return RequestOut.of(row)

    @router.get("/dashboard", response_model=DashboardOut)
    def get_dashboard(principal: Authenticated) -> DashboardOut:
        """Counts by status, turnaround median and p90, per-reader load."""
        service._require_programme()
        board = dashboard(service.store.requests(), [r.rpps for r in service.config.readers])
        return DashboardOut(pilot=service.config.label, counts=board.counts, completed=board.completed,
                            turnaround_median_s=board.turnaround_median_s, turnaround_p90_s=board.turnaround_p90_s,
                            discordant=board.discordant,
                            readers=[ReaderLoadOut(rpps=r.rpps, open=r.open, done=r.done) for r in board.readers])

    @router.get("/dashboard.csv", response_class=Response,
                responses={200: {"content": {"text/csv": {}}, "description": "one line per request"}})
    def get_dashboard_csv(principal: Authenticated) -> Response:
        """The requests as CSV (UTC times, turnaround in seconds)."""
        service._require_programme()
        return Response(dashboard_csv(service.store.requests()), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="screening.csv"', **pilot})

    @router.get("/worklist", response_model=list[CaseOut])
    def worklist(principal: Authenticated) -> list[CaseOut]:
        """The caller's cases (status, age, priority, ready when prefetched), urgent first then oldest."""
        now = service.store.now()
        rows = service.store.cases(reader_rpps=principal.rpps if principal.kind != "developer" else None)
        cases = [CaseOut.of(r, now) for r in rows]
        return sorted(cases, key=lambda c: (c.status == CaseStatus.DONE, c.priority != "urgent", -c.age_s))

    @router.get("/cases/{case_id}", response_model=CaseOut)
    def get_case(case_id: str, principal: Authenticated) -> CaseOut:
        """One case of the caller's worklist."""
        return CaseOut.of(service.case(case_id, principal), service.store.now())

    @router.post("/cases/{case_id}/open", response_model=OpenOut)
    async def open_case(case_id: str, principal: Authenticated, token: Token) -> OpenOut:
        """Open the case: the viewer URL of the exam with its prior (the case is then in reading)."""
        return OpenOut(viewer_url=await asyncio.to_thread(service.open_case, case_id, principal, token))

    @router.post("/cases/{case_id}/reading", response_model=CaseOut)
    async def record_reading(case_id: str, body: L2ReadingIn, principal: Authenticated, token: Token) -> CaseOut:
        """Record the second reading; the result SR goes to the programme and the L1 site."""
        row = await asyncio.to_thread(service.record_reading, case_id, body, principal, token)
        return CaseOut.of(row, service.store.now())

    @router.post("/cases/{case_id}/prefetch", response_model=CaseOut, status_code=202)
    def retry_prefetch(case_id: str, principal: Authenticated) -> CaseOut:
        """Prefetch the case again (e.g. after a source was unreachable); follow it on the worklist."""
        return CaseOut.of(service.retry_prefetch(case_id, principal), service.store.now())

    @router.post("/cases/{case_id}/deliver", response_model=CaseOut)
    async def deliver(case_id: str, principal: Authenticated) -> CaseOut:
        """Send the result again to the programme and the L1 site (after a delivery error)."""
        service.case(case_id, principal)
        return CaseOut.of(await asyncio.to_thread(service.deliver, case_id), service.store.now())

    @router.get("/cases/{case_id}/result.dcm", response_class=Response,
                responses={200: {"content": {"application/dicom": {}}, "description": "the result SR"}})
    def case_result(case_id: str, principal: Authenticated) -> Response:
        """The result as a DICOM Comprehensive SR."""
        row = service.case(case_id, principal)
        if row.sr is None:
            raise HTTPException(404, f"case {case_id} is not read yet")
        return Response(row.sr, media_type="application/dicom")

    @router.get("/results", response_model=list[ResultOut])
    def results(principal: Authenticated, study_uid: str | None = None) -> list[ResultOut]:
        """Second-read results received for this site's exams (L1 site)."""
        rows = service.results(study_uid)
        for row in rows:
            service._audit(principal, "screening.result.read", "success", study_uid=row.study_uid,
                           patient_ins=row.ins, detail=row.id)
        return [ResultOut.of(r) for r in rows]

    return router


def network_router(service: ScreeningService) -> APIRouter:
    """``/screening``: the node-to-node messages (assignment, status, result)."""
    router = APIRouter(prefix="/screening", tags=["screening (pilot)"])

    @router.post("/assignments", response_model=CaseOut, status_code=202)
    def receive_assignment(body: Assignment, principal: Authenticated) -> CaseOut:
        """From the programme's node (its own credential): a case for one of this node's readers; prefetch starts."""
        return CaseOut.of(service.receive_assignment(body, principal), service.store.now())

    @router.post("/grants", status_code=204)
    def receive_grant(body: GrantIn, principal: Authenticated) -> Response:
        """From the programme's node (its own credential): grant a reader's node a KOS this node publishes."""
        service.grant_for_programme(body.kos_uid, body.reader_node, body.request_id, principal)
        return Response(status_code=204)

    @router.post("/requests/{request_id}/status", status_code=204)
    def receive_status(request_id: str, body: StatusIn, principal: Authenticated) -> Response:
        """From a reader's node: the case is prefetched, or in reading."""
        service.record_status(request_id, body.status, principal)
        return Response(status_code=204)

    @router.post("/results", status_code=204,
                 openapi_extra={"requestBody": {"required": True, "content": {
                     # The SR as a DICOM file (application/dicom); the same bytes are taken as octet-stream.
                     "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                     "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
    async def receive_result(request: Request, principal: Authenticated,
                             role: Annotated[list[Literal["programme", "l1"]], Query()],
                             kos: Annotated[str, Query(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", max_length=64)],
                             ) -> Response:
        """From a reader's node: the result SR (``application/dicom``) of the exam of KOS ``kos``, for the
        programme and/or the L1 site."""
        data = await request.body()
        await asyncio.to_thread(service.receive_result, data, list(role), principal, kos)
        return Response(status_code=204)

    return router
