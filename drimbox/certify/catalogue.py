"""Every scenario of the kit, in report order (families in the national homologation's order)."""

from __future__ import annotations

from drimbox.certify.families import consumer, crossval, dicom, dicomweb, performance, submissions, trust, xds
from drimbox.certify.model import Scenario

__all__ = ["all_scenarios"]


def all_scenarios() -> tuple[Scenario, ...]:
    """The kit's scenarios; ids are unique."""
    scenarios = (*dicom.SCENARIOS, *xds.SCENARIOS, *submissions.SCENARIOS, *dicomweb.SCENARIOS, *crossval.SCENARIOS,
                 *trust.SCENARIOS, *consumer.SCENARIOS, *performance.SCENARIOS)
    ids = [s.id for s in scenarios]
    assert len(ids) == len(set(ids)), "duplicate scenario id"
    return scenarios
