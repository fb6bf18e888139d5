"""The programme's dashboard: counts by status, turnaround time, per-reader load, CSV export.

Turnaround is request → result at the programme (``created_at`` → ``result_at``), over the requests
that have a result. The median is the usual one (mean of the two middle values for an even count);
the 90th percentile interpolates linearly between closest ranks (``statistics.quantiles(...,
method="inclusive")``, the same as numpy's default), so that on 1..10 hours it is 9.1 h — a figure a
programme can recompute with a spreadsheet's ``PERCENTILE.INC``.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from drimbox.screening.model import CaseStatus
from drimbox.screening.store import RequestRow

__all__ = ["Dashboard", "ReaderLoad", "dashboard", "dashboard_csv", "percentile"]


@dataclass(frozen=True, slots=True)
class ReaderLoad:
    """One reader's cases: open (assigned, not done) and done."""

    rpps: str
    open: int
    done: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    """What the programme's dashboard shows."""

    counts: dict[str, int]
    """Requests per status (every status present, zeros included)."""
    completed: int
    turnaround_median_s: float | None
    turnaround_p90_s: float | None
    discordant: int
    readers: tuple[ReaderLoad, ...]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (PERCENTILE.INC); one value is its own percentile."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    # In exact rationals (0.9 × 8 is not 7.2 in binary floating point): the figure is the one a spreadsheet shows.
    position = Fraction(str(fraction)) * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(Fraction(ordered[low]) + (Fraction(ordered[high]) - Fraction(ordered[low])) * (position - low))


def dashboard(rows: Sequence[RequestRow], readers: Sequence[str] = ()) -> Dashboard:
    """The dashboard of these requests; ``readers`` (the programme's) appear even without cases."""
    counts = Counter(row.status for row in rows)
    turnarounds = [(row.result_at - row.created_at).total_seconds() for row in rows
                   if row.result_at is not None]
    load: dict[str, list[int]] = {rpps: [0, 0] for rpps in readers}
    for row in rows:
        if row.reader_rpps is None:
            continue
        entry = load.setdefault(row.reader_rpps, [0, 0])
        entry[1 if row.status == CaseStatus.DONE else 0] += 1
    return Dashboard(
        counts={status.value: counts.get(status.value, 0) for status in CaseStatus},
        completed=len(turnarounds),
        turnaround_median_s=statistics.median(turnarounds) if turnarounds else None,
        turnaround_p90_s=percentile(turnarounds, 0.9) if turnarounds else None,
        discordant=sum(1 for row in rows if row.discordant),
        readers=tuple(ReaderLoad(rpps, o, d) for rpps, (o, d) in sorted(load.items())),
    )


_CSV_COLUMNS = ("request_id", "study_uid", "ins", "priority", "status", "reader_rpps", "requested_at", "assigned_at",
                "result_at", "turnaround_s", "outcome", "discordant")


def dashboard_csv(rows: Sequence[RequestRow]) -> str:
    """One line per request (UTC ISO 8601 times, turnaround in seconds), for the programme's own analyses."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        turnaround = (row.result_at - row.created_at).total_seconds() if row.result_at is not None else None
        writer.writerow([
            row.id, row.study_uid, row.patient.get("ins", ""), row.priority, row.status, row.reader_rpps or "",
            row.created_at.isoformat(), row.assigned_at.isoformat() if row.assigned_at else "",
            row.result_at.isoformat() if row.result_at else "", "" if turnaround is None else f"{turnaround:g}",
            (row.l2 or {}).get("outcome") or "", "" if row.discordant is None else str(row.discordant).lower(),
        ])
    return out.getvalue()
