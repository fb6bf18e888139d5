"""Association counts of the node's DIMSE SCP, as an :class:`~drimbox.pacs.scp.ScpService` that
offers no context of its own and only listens to the association events."""

from __future__ import annotations

from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from drimbox.metrics import NodeMetrics

__all__ = ["ScpAssociationMeter"]

_EVENTS = {"established": evt.EVT_ESTABLISHED, "released": evt.EVT_RELEASED,
           "aborted": evt.EVT_ABORTED, "rejected": evt.EVT_REJECTED}


class ScpAssociationMeter:
    """Counts the SCP's associations by event; aborted and rejected ones are also DIMSE errors."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def contexts(self) -> list[PresentationContext]:
        """No presentation context of its own."""
        return []

    def handlers(self) -> list[tuple[Any, ...]]:
        """One handler per association event."""
        return [(event, self._count, [name]) for name, event in _EVENTS.items()]

    def _count(self, event: Event, name: str) -> None:
        self.metrics.dimse_associations.labels("scp", name).inc()
        if name in ("aborted", "rejected"):
            self.metrics.dimse_errors.labels("scp", f"association-{name}").inc()
