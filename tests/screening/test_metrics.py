"""Dashboard figures under an injected clock: counts, turnaround median and p90 exactly, load, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from drimbox.screening.metrics import dashboard, dashboard_csv, percentile
from drimbox.screening.model import CaseStatus
from drimbox.screening.store import ScreeningStore


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_percentile_is_percentile_inc() -> None:
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == 9.1
    assert percentile([5.0], 0.9) == 5.0


def test_turnaround_median_and_p90_exact(tmp_path: object) -> None:
    clock = _Clock()
    store = ScreeningStore(None, clock=clock)
    start = clock.now
    ids = []
    for hour in range(10):  # requests at 08:00, 09:00 … 17:00
        clock.now = start + timedelta(hours=hour)
        ids.append(store.add_request(study_uid=f"1.2.{hour}", kos_uid=f"1.3.{hour}", patient={"ins": "x"}, l1={},
                                     single_breast=None, priority="routine", l1_site_url="https://a").id)
    # Results after 1, 2, … 9 hours for the first nine; the tenth stays assigned to reader B.
    for n, request_id in enumerate(ids[:9], start=1):
        created = store.request(request_id).created_at  # type: ignore[union-attr]
        store.update_request(request_id, status=CaseStatus.DONE.value, reader_rpps="20202020202",
                             result_at=created + timedelta(hours=n), discordant=n == 3)
    store.update_request(ids[9], status=CaseStatus.WAITING.value, reader_rpps="30303030303")
    board = dashboard(store.requests(), readers=["20202020202", "40404040404"])
    assert board.counts == {"requested": 0, "waiting": 1, "prefetched": 0, "in_reading": 0, "done": 9}
    assert board.completed == 9
    assert board.turnaround_median_s == 5 * 3600
    assert board.turnaround_p90_s == 29520  # 8 h + 0.2 × (9 h − 8 h) = 8.2 h, exactly
    assert board.discordant == 1
    assert [(r.rpps, r.open, r.done) for r in board.readers] == [
        ("20202020202", 0, 9), ("30303030303", 1, 0), ("40404040404", 0, 0)]
    rows = list(csv.DictReader(io.StringIO(dashboard_csv(store.requests()))))
    assert [r["turnaround_s"] for r in rows] == [str(n * 3600) for n in range(1, 10)] + [""]
    assert rows[2]["discordant"] == "true" and rows[0]["requested_at"] == "2026-12-01T08:00:00+00:00"
