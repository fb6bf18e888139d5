"""The operations parts on their own: per-peer caps, the request id, certificate and CRL monitoring,
readiness of the outbox, the usage KPI file. Real apps over httpx's ASGI transport, real files,
injected clocks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Response

from drimbox.config import DimseSettings, LocalAE, PeerLimitSettings, RemoteAE, load_settings
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.errors import PacsUnreachable, SourceUnavailable
from drimbox.metrics import HttpMetricsMiddleware, NodeMetrics
from drimbox.ops.certificates import CertificateMonitor
from drimbox.ops.kpi import KpiRecorder
from drimbox.ops.peer_limits import OutboundLimiter, PeerLimitsMiddleware, TokenBucket
from drimbox.ops.readiness import CheckResult, Readiness, outbox_check
from drimbox.ops.request_id import RequestIdMiddleware, current_request_id, request_id_hooks
from drimbox.pacs import PacsClient
from drimbox.publish.outbox import Outbox
from drimbox.retrieve import Actor, Exam, SeriesRef
from drimbox.retrieve.model import InstanceRef
from drimbox.retrieve.transfer import StudyRetriever
from drimbox.trust.peers import HostListPolicy
from tests.publish.factories import make_report

PACS = {"aet": "PACS", "host": "127.0.0.1", "port": 4242}
DAY = 86400.0


def _gated_app(gate: asyncio.Event, limits: PeerLimitSettings, metrics: NodeMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await gate.wait()
        return {"ok": True}

    @app.get("/big")
    def big() -> Response:
        return Response(b"x" * 1_000_000, media_type="application/octet-stream")

    app.add_middleware(PeerLimitsMiddleware, limits=limits,
                       on_refused=lambda limit: metrics.peer_limit_refusals.labels(limit).inc())
    return app


@pytest.mark.parametrize(("limits", "status", "limit"), [
    (PeerLimitSettings(max_concurrent_requests=1, max_total_requests=0, retry_after_s=7), 429, "peer"),
    (PeerLimitSettings(max_concurrent_requests=0, max_total_requests=1, retry_after_s=7), 503, "total"),
])
def test_a_peer_over_its_concurrency_cap_is_refused_with_retry_after(limits: PeerLimitSettings, status: int,
                                                                     limit: str) -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        metrics = NodeMetrics()
        transport = httpx.ASGITransport(app=_gated_app(gate, limits, metrics), client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            first = asyncio.create_task(client.get("/slow"))
            await asyncio.sleep(0.05)
            refused = await client.get("/slow")
            assert refused.status_code == status
            assert refused.headers["retry-after"] == "7"
            assert refused.headers["content-type"] == "application/problem+json"
            assert await client.get("/healthz") is not None  # probes are exempt (404 here, not refused)
            gate.set()
            assert (await first).status_code == 200
            assert (await client.get("/slow")).status_code == 200  # the slot is free again
        assert metrics.sample("drimbox_peer_limit_refusals_total", {"limit": limit}) == 1

    asyncio.run(scenario())


def test_responses_to_a_peer_are_paced_to_its_bandwidth_cap() -> None:
    async def scenario() -> float:
        limits = PeerLimitSettings(max_bytes_per_s=500_000)
        transport = httpx.ASGITransport(app=_gated_app(asyncio.Event(), limits, NodeMetrics()))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            started = time.monotonic()
            response = await client.get("/big")
            assert len(response.content) == 1_000_000
            return time.monotonic() - started

    # One second of burst, then 500 kB/s: a 1 MB answer takes about one more second.
    assert asyncio.run(scenario()) >= 0.9


def test_token_bucket_allows_its_burst_then_paces() -> None:
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0])
    assert bucket.reserve(1000) == 0
    assert bucket.reserve(500) == pytest.approx(0.5)
    now[0] = 2.0
    assert bucket.reserve(400) == 0


def test_the_request_id_is_kept_or_made_bound_and_sent_on() -> None:
    seen: dict[str, str | None] = {}
    outgoing: list[str] = []

    def downstream(request: httpx.Request) -> httpx.Response:
        outgoing.append(request.headers.get("x-request-id", ""))
        return httpx.Response(204)

    onward = httpx.Client(transport=httpx.MockTransport(downstream), event_hooks=request_id_hooks())
    app = FastAPI()

    @app.get("/work")
    def work() -> dict[str, bool]:
        seen["id"] = current_request_id()
        onward.get("http://registry/healthz")  # node → registry, from the request's worker thread
        return {"ok": True}

    app.add_middleware(RequestIdMiddleware)

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return (await client.get("/work", headers={"X-Request-ID": "rid-1"}),
                    await client.get("/work", headers={"X-Request-ID": "bad id\r\nx"}),
                    await client.get("/work"))

    kept, replaced, made = asyncio.run(scenario())
    onward.close()
    assert kept.headers["x-request-id"] == "rid-1"
    assert replaced.headers["x-request-id"] != "bad id\r\nx" and len(replaced.headers["x-request-id"]) == 32
    assert len(made.headers["x-request-id"]) == 32
    assert outgoing == ["rid-1", replaced.headers["x-request-id"], made.headers["x-request-id"]]
    assert seen["id"] == made.headers["x-request-id"]
    assert current_request_id() is None  # nothing leaks out of the request


def _crl(path: Path, next_update: dt.datetime) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CRL issuer")]))
           .last_update(now - dt.timedelta(days=1)).next_update(next_update)
           .sign(key, hashes.SHA256()))
    path.write_bytes(crl.public_bytes(Encoding.PEM))
    return path


def test_certificate_expiry_warns_ahead_and_fails_readiness_once_expired(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path / "pki")
    node_cert = ca.issue("node", hosts=["127.0.0.1"], days=40)
    org_cert = ca.issue("org", days=400)
    crl = _crl(tmp_path / "ca.crl", dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
    settings = load_settings(pacs=PACS, tls={"cert_file": str(node_cert.cert_path)},
                             publish={"signing_cert_file": str(org_cert.cert_path)},
                             trust_list={"crl_files": [str(crl)]}, operations={"certificate_warning_days": 30})
    signer_end = dt.datetime.now(dt.UTC) + dt.timedelta(days=100)
    clock = [time.time()]
    monitor = CertificateMonitor(settings, lambda: ("CN=Liste Blanche DRIM-M", signer_end), clock=lambda: clock[0])

    expiry = {labels["role"]: seconds for labels, seconds in monitor.gauge_expiry()}
    assert set(expiry) == {"node", "organisation", "trust_list_signer"}
    assert expiry["node"] == pytest.approx(40 * DAY, abs=2 * DAY)
    [(_, crl_left)] = list(monitor.gauge_crls())
    assert crl_left == pytest.approx(7 * DAY, abs=60)
    assert monitor.check().ok

    clock[0] += 15 * DAY  # the node certificate now expires within 30 days: said, but not a failure
    result = monitor.check()
    assert not result.ok and "CRL" in result.detail and "stale" in result.detail  # its nextUpdate (7 days) passed
    assert "node certificate" in result.detail and "expires in 25 day(s)" in result.detail

    clock[0] += 30 * DAY  # and now the node certificate has expired too
    detail = monitor.check().detail
    assert "node certificate" in detail and "expired" in detail and "organisation" not in detail


def test_readiness_fails_when_a_due_job_is_not_taken(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        outbox.enqueue(make_report())
        now = [time.time()]
        readiness = Readiness({"outbox": outbox_check(outbox, stuck_s=600, lease_s=300, clock=lambda: now[0])},
                              cache_s=0)
        assert readiness.results()["outbox"].ok
        now[0] += 601
        result = readiness.results()["outbox"]
        assert not result.ok and "not taken" in result.detail
        readiness.close()
    finally:
        outbox.close()


def test_readiness_checks_are_bounded_in_time() -> None:
    def check() -> CheckResult:
        time.sleep(5)  # a PACS that accepts the connection and never answers
        return CheckResult(True, "")

    readiness = Readiness({"pacs": check}, timeout_s=0.2, cache_s=0)
    started = time.monotonic()
    result = readiness.results()["pacs"]
    assert time.monotonic() - started < 1.5
    assert not result.ok and "no answer within" in result.detail
    readiness.close()


def test_the_kpi_file_counts_calls_per_day_and_survives_a_restart(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.UTC)]
    recorder = KpiRecorder(tmp_path, "site-b", clock=lambda: now[0])
    app = FastAPI()

    @app.post("/contextual-call")
    def call(ok: bool = True) -> Response:
        return Response(status_code=303 if ok else 400)

    metrics = NodeMetrics()
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics, face="site", observers=[recorder])

    async def post(ok: bool) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return (await client.post(f"/contextual-call?ok={str(ok).lower()}")).status_code

    assert asyncio.run(post(True)) == 303
    assert asyncio.run(post(False)) == 400
    restarted = KpiRecorder(tmp_path, "site-b", clock=lambda: now[0])
    restarted.record(303)
    day = json.loads((tmp_path / "usage-2026-03-01.json").read_text())
    assert day["contextual_calls"] == {"total": 3, "by_status": {"303": 2, "400": 1},
                                       "by_outcome": {"accepted": 2, "invalid": 1}}
    now[0] += dt.timedelta(minutes=2)  # a new day, a new file
    restarted.record(403)
    assert json.loads((tmp_path / "usage-2026-03-02.json").read_text())["contextual_calls"]["by_outcome"] == \
        {"refused": 1}
    assert metrics.sample("drimbox_http_requests_total",
                          {"face": "site", "route": "/contextual-call", "method": "POST", "status": "400"}) == 1


def test_association_failures_towards_the_pacs_are_counted(node_ae: LocalAE) -> None:

    metrics = NodeMetrics()
    nobody = RemoteAE(aet="PACS", host="127.0.0.1", port=free_port("127.0.0.1"), timeout_s=2)
    with PacsClient(node_ae, nobody, DimseSettings(connect_timeout_s=1), on_association=metrics.scu_association) \
            as client, pytest.raises(PacsUnreachable):
        client.echo()
    assert metrics.sample("drimbox_dimse_associations_total", {"role": "scu", "event": "unreachable"}) >= 1
    assert metrics.sample("drimbox_dimse_errors_total", {"role": "scu", "operation": "association-unreachable"}) >= 1


def test_outbound_requests_to_one_source_share_its_cap() -> None:
    limiter = OutboundLimiter(PeerLimitSettings(outbound_max_concurrent=2))
    lock = threading.Lock()
    running = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    def request(host: str) -> None:
        with limiter.slot(host):
            with lock:
                running[host] += 1
                peak[host] = max(peak[host], running[host])
            time.sleep(0.05)
            with lock:
                running[host] -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(request, ["a"] * 6 + ["b"] * 6))
    assert peak == {"a": 2, "b": 2}  # each source its own cap, every retrieval of the node together


def test_a_source_s_cap_refusal_is_retried_not_taken_as_a_refusal(tmp_path: Path) -> None:

    asked: list[str] = []

    def source(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(429, headers={"Retry-After": "1"}, json={"title": "Too Many Requests"})

    settings = load_settings(pacs=PACS, peers={"hosts": ["source.example"]}, retrieve={"attempts": 3})
    series = SeriesRef("1.2.3.4", "https://source.example/dicom-web/studies/1.2.3/series/1.2.3.4",
                       (InstanceRef("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"),))
    exam = Exam(kos_uid="1.2.9", entry_uuid="e", repository_unique_id="r", study_uid="1.2.3", accession_number=None,
                performed=None, modalities=("CT",), description="", body_part="", source_site="", series=(series,))
    actor = Actor(subject="rpps:1", rpps="1", role="radiologist", display_name=None, token="t")
    metrics = NodeMetrics()
    with httpx.Client(transport=httpx.MockTransport(source)) as client:
        retriever = StudyRetriever(settings, HostListPolicy(settings.peers.hosts), client, backoff_s=0.01,
                                   meter=metrics)
        with pytest.raises(SourceUnavailable):
            retriever.retrieve(exam, actor, tmp_path / "got")
    assert len(asked) == 3  # every attempt, as for a 503
    assert metrics.sample("drimbox_retrieval_seconds_count") == 1
    assert metrics.sample("drimbox_retrieved_instances_total") == 0
