"""Run the applicable scenarios against a target and collect a :class:`RunReport`.

Applicability is decided from the declared profiles only: a scenario none of whose profiles the
target declares is reported *not applicable* (never a pass) and its check is not run. A check that
raises is a failure with the traceback as evidence.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drimbox.certify.model import Evidence, Family, Result, Scenario, ScenarioFailed, Verdict
from drimbox.certify.probe import Probe, RunData, RunOptions
from drimbox.certify.target import Target
from drimbox.certify.wire import Wire

__all__ = ["RunReport", "run_scenarios"]


@dataclass(slots=True)
class RunReport:
    """Everything a run found, in scenario order."""

    target: Target
    started: datetime
    finished: datetime | None = None
    results: list[Result] = field(default_factory=list)
    setup_evidence: list[Evidence] = field(default_factory=list)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict is verdict)

    @property
    def passed(self) -> bool:
        """No failure (not-applicable scenarios neither pass nor fail)."""
        return self.count(Verdict.FAIL) == 0


def _run_one(scenario: Scenario, data: RunData) -> Result:
    result = Result(scenario, Verdict.PASS)
    probe = Probe(result, data)
    data.wire.sink = result.evidence.append
    started = time.perf_counter()
    try:
        scenario.check(probe)
    except ScenarioFailed as exc:
        result.findings.append(str(exc))
    except Exception as exc:  # a broken check or an unreachable target: a failure with the traceback
        result.findings.append(f"the check could not complete: {type(exc).__name__}: {exc}")
        result.evidence.append(Evidence("note", "traceback", traceback.format_exc()))
    finally:
        data.wire.sink = lambda _: None
    result.duration_s = time.perf_counter() - started
    result.verdict = Verdict.FAIL if result.findings else Verdict.PASS
    return result


def run_scenarios(scenarios: Iterable[Scenario], target: Target, *, options: RunOptions | None = None,
                  only: frozenset[Family] | None = None, ids: frozenset[str] | None = None) -> RunReport:
    """Run ``scenarios`` (restricted to the families in ``only`` and the scenario ids in ``ids``) against
    ``target``."""
    options = options or RunOptions()
    report = RunReport(target, datetime.now(UTC))
    wire = Wire(target, target.tokens.fetch())
    data = RunData(target, wire, options)
    try:
        for scenario in scenarios:
            if (only is not None and scenario.family not in only) or (ids is not None and scenario.id not in ids):
                continue
            if not target.declares(*scenario.profiles):
                declared = ", ".join(sorted(target.profiles)) or "none"
                report.results.append(Result(scenario, Verdict.NOT_APPLICABLE, findings=[
                    f"applies to {', '.join(sorted(scenario.profiles))}; the target declares {declared}"]))
                continue
            report.results.append(_run_one(scenario, data))
    finally:
        report.setup_evidence = data.setup_evidence
        data.close()
        wire.close()
    report.finished = datetime.now(UTC)
    return report
