"""The operations side of one node, wired from its parts: ``/metrics``, ``/readyz``, the usage KPIs,
certificate monitoring, per-peer caps and the request id on both HTTP faces.

``/metrics`` is served on the **site face only, behind the one authentication dependency** (any
authenticated caller: a Prometheus scraper presents a bearer token of the site's identity provider,
e.g. ``authorization: {credentials_file: …}`` in its scrape config). It holds no patient data — route
templates, counts, durations — but it describes the node's activity, and every access to the node is
authenticated. The network face has no ``/metrics``: peers have no business reading it.

``/readyz`` and ``/healthz`` are public on both faces and show no patient data; ``/healthz`` is the
endpoint an external uptime probe polls (on the network face it needs the network's client certificate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

import httpx
from fastapi import APIRouter, FastAPI, Response

from drimbox.config import NodeSettings
from drimbox.metrics import (
    CONTENT_TYPE,
    HttpMetricsMiddleware,
    NodeMetrics,
    ResponseObserver,
    certificate_gauges,
    outbox_gauges,
)
from drimbox.ops.certificates import CertificateMonitor
from drimbox.ops.kpi import KpiRecorder
from drimbox.ops.peer_limits import PeerLimitsMiddleware
from drimbox.ops.readiness import (
    CheckResult,
    Readiness,
    outbox_check,
    outbox_oldest_age,
    readiness_router,
    registry_check,
)
from drimbox.ops.request_id import RequestIdMiddleware
from drimbox.publish.outbox import Outbox
from drimbox.publish.service import http_client
from drimbox.trust import Authenticated
from drimbox.trust.trustlist import TrustListPolicy, TrustListRefresher

__all__ = ["NodeOperations", "PacsEcho", "kpi_dir"]


class PacsEcho(Protocol):
    """The PACS bridge's C-ECHO."""

    def echo(self) -> None: ...


def kpi_dir(settings: NodeSettings) -> Path:
    """Where the daily usage KPI files go."""
    return settings.operations.kpi_dir or settings.storage.data_dir / "kpi"


def _metrics_router(metrics: NodeMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format",
        "content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}})
    def prometheus_metrics(principal: Authenticated) -> Response:
        """Prometheus metrics of this node (text exposition format); see :mod:`drimbox.metrics`."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return router


def _registry_url(settings: NodeSettings) -> str | None:
    base = settings.registry.base_url or settings.publish.registry_url
    if base is None:
        return None
    return f"{base.rstrip('/')}/healthz" if settings.registry.base_url else base


def _trust_list_check(policy: TrustListPolicy, refresher: TrustListRefresher | None, max_age_s: float,
                      clock: Callable[[], float]) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        current = policy.current
        if current is None:
            return CheckResult(False, "no verified trust list in force")
        if refresher is not None:
            since = refresher.last_success or refresher.started_at
            if since is not None and clock() - since > max_age_s:
                return CheckResult(False, f"no successful fetch for {clock() - since:.0f} s "
                                          f"({refresher.last_error or 'no error recorded'})")
        return CheckResult(True, f"{len(current.entries)} node(s), generated {current.generated_at.isoformat()}")

    return check


class NodeOperations:
    """Metrics, readiness, KPIs and monitoring of one node (see the module docstring).

    Parameters
    ----------
    settings
        The node's settings (``[operations]``, ``[peer_limits]``, …).
    metrics
        The node's metrics (also given to the parts that count).
    pacs, outbox, trust_list, refresher
        What readiness checks.
    clock
        Seconds since the epoch (injected by tests).
    """

    def __init__(self, settings: NodeSettings, metrics: NodeMetrics, *, pacs: PacsEcho, outbox: Outbox,
                 trust_list: TrustListPolicy | None = None, refresher: TrustListRefresher | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        now = clock or time.time
        ops = settings.operations
        self.settings = settings
        self.metrics = metrics
        self.kpi = KpiRecorder(kpi_dir(settings), settings.name)

        def signer() -> tuple[str, datetime | None] | None:
            current = trust_list.current if trust_list is not None else None
            return (current.signer_subject, current.signer_not_after) if current is not None else None

        self.certificates = CertificateMonitor(settings, signer, clock=now)
        outbox_gauges(metrics, lambda: {s.value: n for s, n in outbox.counts().items()},
                      lambda: outbox_oldest_age(outbox, now))
        certificate_gauges(metrics, self.certificates.gauge_expiry, self.certificates.gauge_crls)

        def pacs_check() -> CheckResult:
            pacs.echo()
            return CheckResult(True, "C-ECHO answered")

        def certificates_check() -> CheckResult:
            result = self.certificates.check()
            return CheckResult(result.ok, result.detail)

        checks: dict[str, Callable[[], CheckResult]] = {"pacs": pacs_check}
        self._registry_http: httpx.Client | None = None
        registry = _registry_url(settings)
        if registry is not None:
            self._registry_http = http_client(settings)
            self._registry_http.timeout = httpx.Timeout(ops.probe_timeout_s)
            checks["registry"] = registry_check(self._registry_http, registry)
        if trust_list is not None:
            max_age = ops.trust_list_max_age_s or 2 * settings.trust_list.refresh_s
            checks["trust_list"] = _trust_list_check(trust_list, refresher, max_age, now)
        checks["outbox"] = outbox_check(outbox, stuck_s=ops.outbox_stuck_s, lease_s=settings.publish.lease_s,
                                        clock=now)
        checks["certificates"] = certificates_check
        self.readiness = Readiness(checks, timeout_s=ops.probe_timeout_s, cache_s=ops.readiness_cache_s)
        self.readiness_router = readiness_router(self.readiness, settings.name)
        self.metrics_router = _metrics_router(metrics)

    def instrument(self, app: FastAPI, face: str) -> None:
        """Add the request id, HTTP metrics (and, on the network face, the per-peer caps) to ``app``."""
        observers: list[ResponseObserver] = [self.kpi] if face == "site" else []
        if face == "network":
            app.add_middleware(PeerLimitsMiddleware, limits=self.settings.peer_limits,
                               on_refused=lambda limit: self.metrics.peer_limit_refusals.labels(limit).inc())
        app.add_middleware(HttpMetricsMiddleware, metrics=self.metrics, face=face, observers=observers)
        app.add_middleware(RequestIdMiddleware)  # outermost: every log line of the request carries its id

    def start(self) -> None:
        """Check the certificates once at start (warnings and errors go to the log at once)."""
        self.certificates.check()

    def close(self) -> None:
        """Release the readiness threads and HTTP client."""
        self.readiness.close()
        if self._registry_http is not None:
            self._registry_http.close()

