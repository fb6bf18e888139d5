"""``GET /readyz`` and ``GET /metrics``: for the orchestrator and the monitoring, no patient data.

Like ``/healthz`` they take no credentials: probes and scrapers run inside the operator's network,
and neither answer names a patient, a document or a caller (counts by transaction only). The
deployment guide has the reverse proxy keep them off the public side.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.deps import ContextDep
from registry.ops.metrics import CONTENT_TYPE
from registry.ops.readiness import check_readiness

__all__ = ["operations_router"]


def operations_router() -> APIRouter:
    """The readiness and metrics routes."""
    router = APIRouter(tags=["operations"])

    @router.get("/readyz")
    async def readyz(ctx: ContextDep) -> JSONResponse:
        """200 when the database answers and the document store takes writes; 503 with the failing checks."""
        readiness = await run_in_threadpool(check_readiness, ctx)
        body = {"status": "ready" if readiness.ready else "not ready", "checks": readiness.checks}
        return JSONResponse(body, status_code=200 if readiness.ready else 503)

    @router.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format",
        "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}})
    def metrics(ctx: ContextDep) -> Response:
        """Prometheus text exposition of :class:`~registry.ops.metrics.RegistryMetrics`."""
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    return router
