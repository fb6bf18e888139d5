"""``/readyz``: whether the node can do its work, one named check per dependency.

The checks of a node (built by :func:`node_checks`):

* ``pacs`` — the site's PACS answers a C-ECHO;
* ``registry`` — the national registry answers HTTP (any status below 500), when one is configured;
* ``trust_list`` — a verified trust list is in force and a fetch succeeded within
  ``operations.trust_list_max_age_s`` (default twice ``trust_list.refresh_s``), when one is configured;
* ``outbox`` — no publication job has been due for longer than ``operations.outbox_stuck_s`` without
  a worker taking it, and no in-flight job has gone without progress beyond its lease;
* ``certificates`` — no monitored certificate has expired, no CRL is past its ``nextUpdate``.

Checks run in parallel, each bounded by ``operations.probe_timeout_s`` (a PACS that does not answer
is a failed check, not a hung probe), and the answer is reused for ``operations.readiness_cache_s``.
The body names each check with ``ok`` and a short reason; it carries no patient data, so the route
is public like ``/healthz`` (orchestrators and load balancers poll it without credentials).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from drimbox.publish.jobs import JobState
from drimbox.publish.outbox import Outbox

__all__ = ["CheckResult", "Readiness", "outbox_check", "outbox_oldest_age", "readiness_router", "registry_check"]


@dataclass(frozen=True)
class CheckResult:
    """One check: passed or not, and why (short, no patient data)."""

    ok: bool
    detail: str


Check = Callable[[], CheckResult]


class Readiness:
    """Runs named checks in parallel with a timeout; caches the answer for ``cache_s``."""

    def __init__(self, checks: Mapping[str, Check], *, timeout_s: float = 3.0, cache_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = dict(checks)
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.checks)), thread_name_prefix="readyz")
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, CheckResult]] | None = None

    def results(self) -> dict[str, CheckResult]:
        """Every check's result (from the cache when recent enough)."""
        with self._lock:
            if self._last is not None and self.clock() - self._last[0] < self.cache_s:
                return self._last[1]
            futures = {name: self._pool.submit(_guarded, check) for name, check in self.checks.items()}
            deadline = time.monotonic() + self.timeout_s
            results: dict[str, CheckResult] = {}
            for name, future in futures.items():
                try:
                    results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except FutureTimeout:
                    results[name] = CheckResult(False, f"no answer within {self.timeout_s:g} s")
            self._last = (self.clock(), results)
            return results

    def close(self) -> None:
        """Stop the check threads (a check still running is left to finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _guarded(check: Check) -> CheckResult:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a failing check is a "not ready", never a 500
        return CheckResult(False, f"{type(exc).__name__}: {str(exc)[:200]}")


def readiness_router(readiness: Readiness, node_name: str) -> APIRouter:
    """``GET /readyz``: 200 when every check passes, else 503; the body names each check."""
    router = APIRouter(tags=["operations"])

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: PACS, registry, trust list, outbox, certificates (see :mod:`drimbox.ops.readiness`)."""
        results = await asyncio.to_thread(readiness.results)
        ready = all(r.ok for r in results.values())
        body = {"status": "ready" if ready else "not ready", "node": node_name,
                "checks": {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()}}
        return JSONResponse(body, status_code=200 if ready else 503,
                            headers={"Cache-Control": "no-store"})

    return router


def registry_check(client: httpx.Client, url: str) -> Check:
    """The registry answers HTTP at ``url`` (a status below 500: it is up, whatever it thinks of us)."""

    def check() -> CheckResult:
        try:
            response = client.get(url)
        except httpx.HTTPError as exc:
            return CheckResult(False, f"unreachable: {type(exc).__name__}")
        if response.status_code >= 500:
            return CheckResult(False, f"answered {response.status_code}")
        return CheckResult(True, f"answered {response.status_code}")

    return check


_UNSETTLED = (JobState.PENDING, JobState.FAILED, JobState.IN_FLIGHT)


def outbox_oldest_age(outbox: Outbox, clock: Callable[[], float] = time.time) -> float:
    """Age in seconds of the oldest job not settled (0 when none)."""
    jobs = outbox.jobs(_UNSETTLED, limit=1)
    return max(0.0, clock() - jobs[0].created) if jobs else 0.0


def outbox_check(outbox: Outbox, *, stuck_s: float, lease_s: float, clock: Callable[[], float] = time.time) -> Check:
    """The outbox is not stuck (see the module docstring)."""

    def check() -> CheckResult:
        now = clock()
        for job in outbox.jobs(_UNSETTLED, limit=500):
            if job.state is JobState.IN_FLIGHT and now - job.updated > lease_s:
                return CheckResult(False, f"job {job.id} in flight without progress for {now - job.updated:.0f} s")
            if job.state is not JobState.IN_FLIGHT and now - job.not_before > stuck_s:
                return CheckResult(False, f"job {job.id} due for {now - job.not_before:.0f} s, not taken")
        counts = outbox.counts()
        return CheckResult(True, f"{sum(counts.get(s, 0) for s in _UNSETTLED)} job(s) waiting, "
                                 f"{counts.get(JobState.DEAD_LETTER, 0)} dead letter(s)")

    return check
