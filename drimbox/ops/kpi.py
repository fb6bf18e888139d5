"""The usage KPI file for the national operator: contextual calls per day, by outcome.

One JSON file per day (UTC), ``<kpi_dir>/usage-YYYY-MM-DD.json`` (default ``kpi_dir``:
``<data_dir>/kpi``), rewritten atomically (temporary file, fsync, rename) after each contextual call,
so a reader never sees a half-written file and a crash loses at most the call being counted::

    {"format": "drimbox-usage-kpi/1", "node": "site-a", "date": "2026-12-08",
     "contextual_calls": {"total": 5, "by_status": {"303": 3, "400": 1, "403": 1},
                          "by_outcome": {"accepted": 3, "invalid": 1, "refused": 1}},
     "updated": "2026-12-08T10:42:17Z"}

``by_status`` is the HTTP status the call was answered with; ``by_outcome`` groups them: ``accepted``
(303 to the patient's page), ``invalid`` (400: INS or traits refused), ``refused`` (403: no consent),
``rejected`` (other 4xx: too large, too many), ``error`` (5xx). A restarted node reads the day's file
back and goes on counting. The file holds counts only — no patient, no practitioner.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

__all__ = ["FORMAT", "KpiRecorder", "outcome_of"]

FORMAT = "drimbox-usage-kpi/1"
_ROUTE = "/contextual-call"


def outcome_of(status: int) -> str:
    """The KPI outcome of a contextual call answered with ``status``."""
    if status == 303:
        return "accepted"
    if status == 400:
        return "invalid"
    if status == 403:
        return "refused"
    if 400 <= status < 500:
        return "rejected"
    if status >= 500:
        return "error"
    return "other"


class KpiRecorder:
    """Counts contextual calls into the day's KPI file; an HTTP response observer of the site face."""

    def __init__(self, directory: Path, node_name: str, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self.directory = directory
        self.node_name = node_name
        self.clock = clock
        self._lock = threading.Lock()
        self._day: date | None = None
        self._by_status: dict[str, int] = {}

    def path_for(self, day: date) -> Path:
        """The KPI file of ``day``."""
        return self.directory / f"usage-{day.isoformat()}.json"

    def __call__(self, route: str, method: str, status: int) -> None:
        """Observe one response; counts it when it answered a contextual call."""
        if route == _ROUTE and method == "POST":
            self.record(status)

    def record(self, status: int) -> None:
        """Count one contextual call answered with ``status`` and rewrite the day's file."""
        now = self.clock().astimezone(UTC)
        with self._lock:
            if self._day != now.date():
                self._day = now.date()
                self._by_status = self._load(self._day)
            key = str(status)
            self._by_status[key] = self._by_status.get(key, 0) + 1
            self._write(self._day, now)

    def _load(self, day: date) -> dict[str, int]:
        try:
            data = json.loads(self.path_for(day).read_text())
            return {str(k): int(v) for k, v in data["contextual_calls"]["by_status"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _write(self, day: date, now: datetime) -> None:
        by_outcome: dict[str, int] = {}
        for status, count in self._by_status.items():
            outcome = outcome_of(int(status))
            by_outcome[outcome] = by_outcome.get(outcome, 0) + count
        body = {"format": FORMAT, "node": self.node_name, "date": day.isoformat(),
                "contextual_calls": {"total": sum(self._by_status.values()),
                                     "by_status": dict(sorted(self._by_status.items())),
                                     "by_outcome": dict(sorted(by_outcome.items()))},
                "updated": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(day)
        temporary = final.with_name(f".{final.name}.tmp")
        with temporary.open("w") as fh:
            json.dump(body, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, final)
