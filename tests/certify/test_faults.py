"""Fault injection: a node that breaks one rule at a time makes the scenario that checks the rule
fail, with evidence naming the fault; with no fault every generic DICOMweb scenario passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from drimbox.devnet.orthanc import OrthancProcess
from tests.certify.faultnode import FAULTS, fault_node
from tests.certify.reports import Run, certify

# scenario → (the fault that must fail it, a word of the finding that names it)
EXPECTED = {
    "dicomweb.negotiation.406-media-type": ("answer-200-to-bad-accept", "406"),
    "dicomweb.negotiation.406-transfer-syntax": ("answer-200-to-bad-accept", "406"),
    "dicomweb.qido.406": ("answer-200-to-bad-accept", "406"),
    "dicomweb.negotiation.400-malformed": ("accept-malformed-accept", "400"),
    "dicomweb.qido.bad-query": ("qido-lenient", "limit=many"),
    "dicomweb.qido.hierarchy": ("qido-drop-instance", "missing 1"),
    "dicomweb.wado.ans-series": ("multipart-no-close", "close delimiter"),
    "dicomweb.wado.ans-instance": ("declare-lossy-syntax", "1.2.840.10008.1.2.4.50"),
    "dicomweb.wado.metadata": ("metadata-inline-pixels", "inline"),
    "perf.wado.viewing": ("slow-first-byte", "latency to the first image"),
}
# faults whose scenario is already above, checked too (each fault must fail something)
MORE = {"wado-drop-instance": ("dicomweb.wado.ans-series", "instances")}


def _run(orthanc: OrthancProcess, tmp_path: Path, fault: str | None, *scenarios: str) -> Run:
    with fault_node(orthanc.http_url, fault) as node:
        return certify(tmp_path, "--node", node, "--profile", "dicomweb", "--only", "dicomweb", "--only",
                       "performance", *(a for s in scenarios for a in ("--scenario", s)), "--ct-images", "4",
                       "--first-image-max", "2", "--viewing-min", "0.01")


def test_no_fault_every_generic_scenario_passes(orthanc_a_clean: OrthancProcess, tmp_path: Path) -> None:
    run = _run(orthanc_a_clean, tmp_path, None)
    applicable = {k: v for k, v in run.verdicts().items() if v != "not-applicable"}
    assert applicable and set(applicable.values()) == {"pass"}, {k: run.cases[k].failure for k in applicable}


_CASES = sorted([(fault, scenario, word) for scenario, (fault, word) in EXPECTED.items()]
                + [(fault, scenario, word) for fault, (scenario, word) in MORE.items()])


def test_every_fault_is_used() -> None:
    assert {fault for fault, _, _ in _CASES} == set(FAULTS)


@pytest.mark.parametrize(("fault", "scenario", "word"), _CASES)
def test_each_fault_fails_its_scenario(orthanc_a_clean: OrthancProcess, tmp_path: Path, fault: str, scenario: str,
                                       word: str) -> None:
    run = _run(orthanc_a_clean, tmp_path, fault, scenario)
    case = run.cases[scenario]
    assert case.verdict == "fail", (fault, run.verdicts())
    assert word in case.failure, case.failure
    assert "HTTP/1.1" in case.evidence  # the raw exchange that shows the fault
    assert run.exit_code == 1
