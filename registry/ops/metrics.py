"""Prometheus metrics of the registry (``prometheus-client``), one registry of collectors per app.

Labels carry no identifier of a patient, document or caller: only the transaction, the HTTP status
and the XDS outcome, so the endpoint can be scraped without exposing health data.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "TRANSACTIONS", "RegistryMetrics", "transaction_of"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

TRANSACTIONS: dict[str, str] = {
    "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b": "ITI-41",
    "urn:ihe:iti:2007:RegistryStoredQuery": "ITI-18",
    "urn:ihe:iti:2007:RetrieveDocumentSet": "ITI-43",
    "urn:ihe:iti:2010:UpdateDocumentSet": "ITI-57",
}
"""WS-Addressing action → IHE transaction."""

_PATHS = (
    ("/fhir/DocumentReference", "ITI-67"),
    ("/fhir/Binary", "ITI-68"),
    ("/xds/registry", "xds-registry"),
    ("/xds/repository", "xds-repository"),
    ("/whitelist", "trust-list"),
    ("/healthz", "operations"),
    ("/readyz", "operations"),
    ("/metrics", "operations"),
)

# Sub-millisecond to a few seconds: an indexed ITI-18 is ~10 ms, an ITI-41 with signature checks ~100 ms.
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def transaction_of(path: str, action: str | None = None) -> str:
    """The transaction label of a request: its SOAP action when known, else its path."""
    if action in TRANSACTIONS:
        return TRANSACTIONS[action]
    return next((name for prefix, name in _PATHS if path.startswith(prefix)), "other")


class RegistryMetrics:
    """The registry's collectors (in their own :class:`CollectorRegistry`, never the global one)."""

    def __init__(self) -> None:
        self.collectors = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "registry_requests",
            "HTTP requests answered, by IHE transaction, HTTP status and XDS outcome.",
            ["transaction", "status", "outcome"],
            registry=self.collectors,
        )
        self.duration = Histogram(
            "registry_request_duration_seconds",
            "Time to answer a request, by IHE transaction (ITI-18: the stored query latency).",
            ["transaction"],
            buckets=_BUCKETS,
            registry=self.collectors,
        )
        self.submissions = Counter(
            "registry_submissions",
            "ITI-41 and ITI-57 submissions by outcome (registered, refused, error).",
            ["transaction", "outcome"],
            registry=self.collectors,
        )

    def observe(self, *, transaction: str, status: int, outcome: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(transaction=transaction, status=str(status), outcome=outcome).inc()
        self.duration.labels(transaction=transaction).observe(seconds)
        if transaction in ("ITI-41", "ITI-57"):
            submitted = {"success": "registered", "failure": "refused"}.get(outcome, "error")
            self.submissions.labels(transaction=transaction, outcome=submitted).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.collectors)
