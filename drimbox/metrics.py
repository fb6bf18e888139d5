"""The node's Prometheus metrics (``prometheus-client``), one :class:`NodeMetrics` per node instance.

Each node owns its :class:`~prometheus_client.CollectorRegistry` (never the process-wide default), so
several nodes in one process — tests, the demo — do not mix their counts. The parts that count take
the :class:`NodeMetrics` (or one of its bound methods) as a constructor argument.

Labels never carry request data: routes are the route *templates* (``/dicom-web/studies/{study}``),
never a path with UIDs. The list of metrics, with their labels and help, is generated from
:attr:`NodeMetrics.catalogue` into ``docs/metrics.md`` (``drimbox config metrics``): request counts by
face, route template and status, response bytes, instances and bytes served to peers and retrieved
from sources, retrieval duration and throughput, DIMSE associations and errors (SCP and SCU),
outbox depth and age, publication latency, cache look-ups, per-peer cap refusals, certificate expiry
and CRL next update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drimbox.limits import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_TYPE",
    "GaugeSource",
    "HttpMetricsMiddleware",
    "MetricInfo",
    "NodeMetrics",
    "ResponseObserver",
    "certificate_gauges",
    "outbox_gauges",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Media type of the text exposition format."""


_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_THROUGHPUT_BUCKETS = tuple(float(2**k) for k in range(16, 34, 2))  # 64 KiB/s … 8 GiB/s


@dataclass(frozen=True)
class MetricInfo:
    """One metric as documented: exposed name, type, label names, help."""

    name: str
    kind: str
    labels: tuple[str, ...]
    documentation: str


class GaugeSource(Protocol):
    """Something read at scrape time: yields ``(labels, value)`` pairs of one gauge."""

    def __call__(self) -> Iterable[tuple[dict[str, str], float]]: ...


class _ScrapeGauge(Collector):
    """A labelled gauge whose values are read from ``source`` at each scrape (outbox, certificates)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], source: GaugeSource) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.source = source

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, value in self.source():
            family.add_metric([labels.get(key, "") for key in self.labels], value)
        return [family]


class NodeMetrics:
    """Every metric of one node, in its own registry (see the module docstring for the list)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.catalogue: list[MetricInfo] = []
        """Every metric declared, with its labels (the generated ``docs/metrics.md``)."""
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        self.http_requests = counter("drimbox_http_requests", "HTTP requests answered.",
                                     ("face", "route", "method", "status"))
        self.http_response_bytes = counter("drimbox_http_response_bytes", "HTTP response body bytes sent.",
                                           ("face", "route"))
        self.http_in_progress = gauge("drimbox_http_requests_in_progress", "HTTP requests being answered.",
                                      ("face",))
        self.instances_served = counter("drimbox_instances_served", "Instances served to peer nodes.", ("kind",))
        self.instance_bytes_served = counter("drimbox_instance_bytes_served",
                                             "Bytes of whole instances served to peer nodes.")
        self.retrieved_instances = counter("drimbox_retrieved_instances", "Instances received from source nodes.")
        self.retrieved_bytes = counter("drimbox_retrieved_bytes", "Bytes received from source nodes.")
        self.retrieval_seconds = histogram("drimbox_retrieval_seconds", "Duration of one exam retrieval.",
                                           _DURATION_BUCKETS)
        self.retrieval_throughput = histogram("drimbox_retrieval_throughput_bytes_per_second",
                                              "Bytes received per second over one exam retrieval.",
                                              _THROUGHPUT_BUCKETS)
        self.dimse_associations = counter("drimbox_dimse_associations",
                                          "DIMSE associations by role (scp: accepted by the node; scu: requested "
                                          "of the PACS) and event.", ("role", "event"))
        self.dimse_errors = counter("drimbox_dimse_errors", "Failed DIMSE operations.", ("role", "operation"))
        self.publication_latency = histogram("drimbox_publication_latency_seconds",
                                             "From the report's arrival to its publication job settled.",
                                             _DURATION_BUCKETS)
        self.cache_lookups = counter("drimbox_cache_lookups", "Node cache look-ups.", ("result",))
        self.peer_limit_refusals = counter("drimbox_peer_limit_refusals",
                                           "Network-face requests refused by a per-peer cap.", ("limit",))

    def _counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        self.catalogue.append(MetricInfo(f"{name}_total", "counter", labels, documentation))
        return Counter(name, documentation, labels, registry=self.registry)

    def _gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        self.catalogue.append(MetricInfo(name, "gauge", labels, documentation))
        return Gauge(name, documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
        self.catalogue.append(MetricInfo(name, "histogram", (), documentation))
        return Histogram(name, documentation, buckets=buckets, registry=self.registry)

    # -- scrape-time gauges -----------------------------------------------------------------------

    def add_gauge(self, name: str, documentation: str, labels: tuple[str, ...], source: GaugeSource) -> None:
        """Register a gauge read from ``source`` at each scrape."""
        self.catalogue.append(MetricInfo(name, "gauge", labels, documentation))
        self.registry.register(_ScrapeGauge(name, documentation, labels, source))

    # -- what the parts call ----------------------------------------------------------------------

    def scu_association(self, outcome: str) -> None:
        """An association request to the PACS: ``established`` or how it failed."""
        self.dimse_associations.labels("scu", outcome).inc()
        if outcome != "established":
            self.dimse_errors.labels("scu", f"association-{outcome}").inc()

    def cache_lookup(self, hit: bool) -> None:
        """The node cache answered (``hit``) or went to the PACS / source node."""
        self.cache_lookups.labels("hit" if hit else "miss").inc()

    def instance_served(self, kind: str, size: int) -> None:
        """One instance handed over on the network face (``kind`` as in the audit: ``instance``, …)."""
        self.instances_served.labels(kind).inc()
        if kind == "instance":
            self.instance_bytes_served.inc(size)

    def instance_retrieved(self, size: int) -> None:
        """One instance received from a source node and kept (complete, checked against the KOS)."""
        self.retrieved_instances.inc()
        self.retrieved_bytes.inc(size)

    def retrieval_finished(self, seconds: float, received_bytes: int) -> None:
        """One exam retrieval ended (whatever its outcome)."""
        self.retrieval_seconds.observe(seconds)
        if seconds > 0:
            self.retrieval_throughput.observe(received_bytes / seconds)

    def exposition(self) -> bytes:
        """The text exposition of every metric (what ``/metrics`` answers)."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The current value of one sample (0 when absent): for tests and the CLI."""
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


ResponseObserver = Callable[[str, str, int], None]
"""Called with (route template, method, status) when a response starts, before its body (the usage KPIs)."""


def _route_of(scope: Scope) -> str:
    """The route template of the request, with its routers' prefixes (never the path's values).

    The route in the scope knows its own template only (``/studies/{study}``), not the prefixes of the
    routers it was included through; those are what the request path has before the rendered template.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return "unmatched"
    template = str(template)
    path = str(scope.get("path", ""))
    params = {key: str(value) for key, value in (scope.get("path_params") or {}).items()}
    try:
        rendered = template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template
    if rendered and path.endswith(rendered):
        return path[: len(path) - len(rendered)] + template
    return template


class HttpMetricsMiddleware:
    """ASGI middleware counting requests, statuses and response bytes per route template."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics, face: str,
                 observers: Iterable[ResponseObserver] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.face = face
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # a request whose app raised before answering is counted as the 500 the server sends
        sent = 0
        observed = False
        method = str(scope.get("method", "GET"))

        def observe() -> None:
            # Before the body goes out: whoever reads the response can rely on what the observers wrote.
            nonlocal observed
            observed = True
            for observer in self.observers:
                observer(_route_of(scope), method, status)

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                observe()
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        in_progress = self.metrics.http_in_progress.labels(self.face)
        in_progress.inc()
        try:
            await self.app(scope, receive, counting_send)
        finally:
            in_progress.dec()
            route = _route_of(scope)
            self.metrics.http_requests.labels(self.face, route, method, str(status)).inc()
            self.metrics.http_response_bytes.labels(self.face, route).inc(sent)
            if not observed:
                observe()


def certificate_gauges(metrics: NodeMetrics, expiry: GaugeSource, crls: GaugeSource) -> None:
    """Register the seconds to expiry of the monitored certificates and to each CRL's nextUpdate."""
    metrics.add_gauge("drimbox_certificate_expiry_seconds",
                      "Seconds until the certificate expires (negative: expired).", ("role", "name"), expiry)
    metrics.add_gauge("drimbox_crl_next_update_seconds", "Seconds until the CRL's nextUpdate (negative: stale).",
                      ("name",), crls)


def outbox_gauges(metrics: NodeMetrics, counts: Callable[[], dict[str, int]],
                  oldest_age: Callable[[], float]) -> None:
    """Register the outbox depth (jobs by state) and the age of its oldest unsettled job."""
    metrics.add_gauge("drimbox_outbox_jobs", "Publication jobs by state.", ("state",),
                      lambda: [({"state": state}, float(n)) for state, n in counts().items()])
    metrics.add_gauge("drimbox_outbox_oldest_age_seconds", "Age of the oldest publication job not settled.", (),
                      lambda: [({}, oldest_age())])
