"""Operations of the registry: readiness, Prometheus metrics, request ids in responses and log events."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import structlog
from conftest import RegistryUnderTest, start_registry
from prometheus_client.parser import text_string_to_metric_families
from test_registry_rplc import BrokenBlobStore
from xdsfactory import FAILURE, SUCCESS, Submission, find_documents

from registry.context import RegistryContext
from registry.devdb import ThrowawayPostgres

if TYPE_CHECKING:
    from xdsfactory import TestPki


def samples(registry: RegistryUnderTest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) → value."""
    response = registry.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_readyz_reports_each_check(registry: RegistryUnderTest) -> None:
    response = registry.client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "blob_store": "ok"}},
    )


@pytest.fixture()
def broken_store(registry: RegistryUnderTest) -> Iterator[RegistryUnderTest]:
    ctx = registry.context
    broken = RegistryContext(
        settings=ctx.settings, database=ctx.database, blobs=BrokenBlobStore(), trust=ctx.trust, tokens=ctx.tokens
    )
    yield from start_registry(registry.backend, ctx.settings.data_dir, registry.pki, ctx.settings.database_url,
                              context=broken)


def test_readyz_is_503_when_the_document_store_takes_no_writes(broken_store: RegistryUnderTest) -> None:
    response = broken_store.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "blob_store": "not writable: No space left on device "
                                                                        "(documents/tmp)"}


def test_readyz_is_503_when_the_database_is_gone(tmp_path: Path, pki: TestPki, postgres: ThrowawayPostgres) -> None:
    url = postgres.create_database("registry_gone")
    for registry in start_registry("postgresql", tmp_path, pki, url):
        assert registry.client.get("/readyz").status_code == 200
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                             autocommit=True) as admin:
            admin.execute('DROP DATABASE "registry_gone" WITH (FORCE)')  # its connections cut, then gone
        response = registry.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "not ready"
        assert response.json()["checks"]["database"].startswith("unreachable: OperationalError")
        assert response.json()["checks"]["blob_store"] == "ok"
        assert registry.client.get("/healthz").status_code == 200  # alive all the same


def test_metrics_count_requests_by_transaction_status_and_outcome(registry: RegistryUnderTest) -> None:
    sub = Submission()
    before = samples(registry)
    assert registry.publish(sub).status == SUCCESS
    assert registry.publish(Submission(kos_uid=sub.kos_uid)).status == FAILURE  # same uniqueId, other bytes
    for _ in range(3):
        assert registry.post("/xds/registry", find_documents(sub.patient_id, registry.pki)).status == SUCCESS
    after = samples(registry)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("registry_requests_total", transaction="ITI-18", status="200", outcome="success") == 3
    assert grew("registry_requests_total", transaction="ITI-41", status="200", outcome="success") == 1
    assert grew("registry_requests_total", transaction="ITI-41", status="200", outcome="failure") == 1
    assert grew("registry_request_duration_seconds_count", transaction="ITI-18") == 3
    assert grew("registry_request_duration_seconds_bucket", transaction="ITI-18", le="+Inf") == 3
    assert grew("registry_request_duration_seconds_sum", transaction="ITI-18") > 0
    assert grew("registry_submissions_total", transaction="ITI-41", outcome="registered") == 1
    assert grew("registry_submissions_total", transaction="ITI-41", outcome="refused") == 1
    assert not any(sub.ins in str(key) for key in after)  # no patient in any label


def test_the_callers_request_id_is_returned_and_logged(registry: RegistryUnderTest) -> None:
    sub = Submission()
    assert registry.publish(sub).status == SUCCESS
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer(), foreign_pre_chain=[structlog.contextvars.merge_contextvars]))
    registry_logger = logging.getLogger("registry")
    level = registry_logger.level
    registry_logger.addHandler(handler)
    registry_logger.setLevel(logging.INFO)
    built = find_documents(sub.patient_id, registry.pki)
    refused = Submission(kos_uid=sub.kos_uid)
    try:
        with structlog.testing.capture_logs() as events:
            answer = registry.client.post("/xds/registry", content=built.body,
                                          headers={"Content-Type": built.content_type, "X-Request-ID": "node-a.4f2c"})
            # ITI-41 refusal: the registry's own (standard library) log record carries the id too
            from xdsfactory import provide_and_register

            duplicate = provide_and_register(refused, registry.pki)
            registry.client.post("/xds/repository", content=duplicate.body,
                                 headers={"Content-Type": duplicate.content_type, "X-Request-ID": "node-a.77"})
            odd = registry.client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    finally:
        registry_logger.removeHandler(handler)
        registry_logger.setLevel(level)
    assert answer.headers["x-request-id"] == "node-a.4f2c"
    access = [e for e in events if e["event"] == "request"]
    assert [(e["request_id"], e["transaction"], e["status"], e["outcome"]) for e in access] == [
        ("node-a.4f2c", "ITI-18", 200, "success"),
        ("node-a.77", "ITI-41", 200, "failure"),
        (odd.headers["x-request-id"], "operations", 200, "none"),
    ]
    assert odd.headers["x-request-id"] != "no spaces allowed" and len(odd.headers["x-request-id"]) == 32
    assert all(e["duration_ms"] >= 0 and e["log_level"] == "info" for e in access)
    refusals = [json.loads(line) for line in records.getvalue().splitlines() if "refused" in line]
    assert refusals and all(r["request_id"] == "node-a.77" for r in refusals)
