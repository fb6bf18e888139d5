"""Readings and studies shared by the screening unit tests."""

from __future__ import annotations

from datetime import date

import pytest

from drimbox.screening.model import BreastReading, Outcome, Reading


def reading(rpps: str = "10101010101", *, right: tuple[int, str] = (1, "B"), left: tuple[int, str] = (2, "B"),
            outcome: Outcome | None = None) -> Reading:
    """A two-breast reading."""
    return Reading(reader_rpps=rpps, reader_name="Dr Test", date=date(2026, 12, 1), notes="RAS",
                   breasts=(BreastReading(laterality="R", category=right[0], density=right[1]),
                            BreastReading(laterality="L", category=left[0], density=left[1])), outcome=outcome)


@pytest.fixture
def l1() -> Reading:
    """A normal first reading."""
    return reading()
