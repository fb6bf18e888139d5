"""Operations on the running demo network (issue 10): the metrics move by exactly what a retrieval
moved, readiness names its checks, the request id travels node → node, contextual calls are counted
in the usage KPI file, and ``/metrics`` is behind the authentication dependency."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from drimbox.metrics import NodeMetrics
from drimbox.ops.request_id import bound_request_id
from drimbox.publish.service import http_client
from drimbox.retrieve import Actor
from drimbox.retrieve.transfer import StudyRetriever
from drimbox.trust.peers import HostListPolicy, network_client
from tests.e2e.conftest import Net
from tests.e2e.exams import published_exams


def _scrape(net: Net, site: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{net.node(site)['base_url']}/metrics", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_exactly_the_instances_and_bytes_of_a_retrieval(net: Net, tmp_path: Path) -> None:
    token = net.token()
    [exam] = published_exams(net.endpoints["registry"]["fhir"], token, net.ct_patient)
    before = _scrape(net, "site-a", token)
    settings = net.settings("site-b", storage={"data_dir": str(tmp_path)})
    consumer = NodeMetrics()
    sent_ids: list[str] = []
    echoed: list[str] = []
    client = network_client(settings)
    client.event_hooks["request"].append(lambda request: sent_ids.append(request.headers.get("x-request-id", "")))
    client.event_hooks["response"].append(lambda response: echoed.append(response.headers.get("x-request-id", "")))
    retriever = StudyRetriever(settings, HostListPolicy(settings.peers.hosts), client, meter=consumer)
    actor = Actor(subject="rpps:10101010101", rpps="10101010101", role="radiologist", display_name=None, token=token)
    try:
        with bound_request_id("ops-test.retrieval-1"):
            report = retriever.retrieve(exam, actor, tmp_path / "got")
    finally:
        client.close()
    assert report.complete, report
    n, b = len(report.received), report.bytes
    assert n == exam.instance_count and b == sum(p.stat().st_size for p in report.received.values())

    # The consumer's counters: exactly N and B.
    assert consumer.sample("drimbox_retrieved_instances_total") == n
    assert consumer.sample("drimbox_retrieved_bytes_total") == b
    assert consumer.sample("drimbox_retrieval_seconds_count") == 1

    # The source's /metrics: exactly N whole instances and B bytes more (the last one is recorded when
    # the server's iteration ends, just after the client has it: wait for it, then compare exactly).
    deadline = time.monotonic() + 10
    while True:
        after = _scrape(net, "site-a", token)
        served = _value(after, "drimbox_instances_served_total", kind="instance") \
            - _value(before, "drimbox_instances_served_total", kind="instance")
        if served >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert served == n
    bytes_served = "drimbox_instance_bytes_served_total"
    assert _value(after, bytes_served) - _value(before, bytes_served) == b
    series_route = "/dicom-web/studies/{study}/series/{series}"
    requests = _value(after, "drimbox_http_requests_total", face="network", route=series_route, method="GET",
                      status="200") - _value(before, "drimbox_http_requests_total", face="network",
                                             route=series_route, method="GET", status="200")
    assert requests == len(exam.series)

    # The request id went node → node and came back.
    assert sent_ids and set(sent_ids) == {"ops-test.retrieval-1"}
    assert set(echoed) == {"ops-test.retrieval-1"}


def test_metrics_need_a_token_and_readiness_names_its_checks(net: Net) -> None:
    base = net.node("site-a")["base_url"]
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    ready = httpx.get(f"{base}/readyz", timeout=10)
    body = ready.json()
    assert ready.status_code == 200, body
    assert body["status"] == "ready"
    assert {"pacs", "registry", "trust_list", "outbox", "certificates"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values()), body
    scraped = _scrape(net, "site-a", net.token())
    assert _value(scraped, "drimbox_dimse_associations_total", role="scu", event="established") >= 1
    assert _value(scraped, "drimbox_certificate_expiry_seconds", role="node",
                  name=str(net.settings("site-a").tls.cert_file)) > 30 * 86400
    signer = [value for (metric, labels), value in scraped.items()
              if metric == "drimbox_certificate_expiry_seconds" and ("role", "trust_list_signer") in labels]
    assert len(signer) == 1 and signer[0] > 0  # the signer of the trust list in force
    # The response carries a request id; a caller's own (valid) one is kept, a hostile one replaced.
    assert len(ready.headers["x-request-id"]) == 32
    kept = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "probe-42"}, timeout=10)
    assert kept.headers["x-request-id"] == "probe-42"
    replaced = httpx.get(f"{base}/healthz", headers={"X-Request-ID": "x" * 65}, timeout=10)
    assert replaced.headers["x-request-id"] != "x" * 65


def test_contextual_calls_are_counted_in_the_daily_kpi_file(net: Net) -> None:
    site_b = net.node("site-b")["base_url"]
    kpi_file = net.settings("site-b").storage.data_dir / "kpi" / f"usage-{datetime.now(UTC).date().isoformat()}.json"

    def counted() -> dict[str, int]:
        if not kpi_file.exists():
            return {}
        return dict(json.loads(kpi_file.read_text())["contextual_calls"]["by_status"])

    before = counted()
    answer = httpx.post(f"{site_b}/contextual-call", data={"Patient.identifier.value": "not an INS"}, timeout=10)
    assert answer.status_code == 400
    data = json.loads(kpi_file.read_text())
    assert data["format"] == "drimbox-usage-kpi/1" and data["node"] == "site-b"
    assert data["contextual_calls"]["by_status"]["400"] == before.get("400", 0) + 1
    assert data["contextual_calls"]["total"] == sum(data["contextual_calls"]["by_status"].values())
    assert "not an INS" not in kpi_file.read_text()


def test_the_request_id_goes_with_the_node_s_registry_calls(net: Net) -> None:
    settings = net.settings("site-b")
    client = http_client(settings)  # the client of the node's registry look-ups and publications
    sent: list[str] = []
    client.event_hooks["request"].append(lambda request: sent.append(request.headers.get("x-request-id", "")))
    try:
        with bound_request_id("ops-test.registry-1"):
            assert client.get(f"{net.endpoints['registry']['base_url']}/healthz").status_code == 200
        client.get(f"{net.endpoints['registry']['base_url']}/healthz")  # outside any request: none sent
    finally:
        client.close()
    assert sent == ["ops-test.registry-1", ""]
