"""Operations of a node: readiness, request ids, certificate monitoring, per-peer caps, usage KPIs,
the configuration reference and the conformance statements (issue 10). Metrics are in
:mod:`drimbox.metrics`."""

__all__: list[str] = []
