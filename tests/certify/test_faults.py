"""Fault injection: a node that breaks one rule at a time makes the scenario that checks the rule
fail, with evidence naming the fault; with no fault every generic DICOMweb scenario passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from drimbox.devnet.orthanc import OrthancProcess
from tests.certify.faultnode import FAULTS, fault_node
from tests.certify.reports import Run, certify

# fault → (the scenario it must fail, a word of the finding that names it)
EXPECTED = {
    "answer-200-to-bad-accept": ("dicomweb.negotiation.406-media-type", "406"),
    "accept-malformed-accept": ("dicomweb.negotiation.400-malformed", "400"),
    "qido-lenient": ("dicomweb.qido.bad-query", "limit=many"),
    "qido-drop-instance": ("dicomweb.qido.hierarchy", "missing 1"),
    "multipart-no-close": ("dicomweb.wado.ans-series", "close delimiter"),
    "wado-drop-instance": ("dicomweb.wado.ans-series", "instances"),
    "declare-lossy-syntax": ("dicomweb.wado.ans-instance", "1.2.840.10008.1.2.4.50"),
    "metadata-inline-pixels": ("dicomweb.wado.metadata", "inline"),
    "slow-first-byte": ("perf.wado.viewing", "latency to the first image"),
}


def _run(orthanc: OrthancProcess, tmp_path: Path, fault: str | None) -> Run:
    with fault_node(orthanc.http_url, fault) as node:
        return certify(tmp_path, "--node", node, "--profile", "dicomweb", "--only", "dicomweb", "--only",
                       "performance", "--ct-images", "4", "--first-image-max", "2", "--viewing-min", "0.01")


def test_no_fault_every_generic_scenario_passes(orthanc_a_clean: OrthancProcess, tmp_path: Path) -> None:
    run = _run(orthanc_a_clean, tmp_path, None)
    applicable = {k: v for k, v in run.verdicts().items() if v != "not-applicable"}
    assert applicable and set(applicable.values()) == {"pass"}, {k: run.cases[k].failure for k in applicable}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_its_scenario(orthanc_a_clean: OrthancProcess, tmp_path: Path, fault: str) -> None:
    scenario, word = EXPECTED[fault]
    run = _run(orthanc_a_clean, tmp_path, fault)
    case = run.cases[scenario]
    assert case.verdict == "fail", (fault, run.verdicts())
    assert word in case.failure, case.failure
    assert "HTTP/1.1" in case.evidence  # the raw exchange that shows the fault
    assert run.exit_code == 1
