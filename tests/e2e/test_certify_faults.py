"""Fault injection on the running demo (issue 9): site A behind a front that breaks one rule at a
time (:mod:`tests.e2e.faultfront`). With no fault every DRIM-M scenario passes through the front;
each fault makes the scenario it is for fail, with a finding that names it. Together with the
generic DICOMweb faults of ``tests/certify/test_faults.py``, every scenario of the kit has one.

The kit's data (its CT, its report over MLLP, the KOS site A published) is produced once for the
module (``--data-dir``) and each case runs only its scenario (``--scenario``), so the matrix is fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drimbox.certify.catalogue import all_scenarios
from drimbox.devnet.ports import free_port
from tests.certify.reports import Run, certify
from tests.certify.test_faults import EXPECTED as GENERIC_EXPECTED
from tests.e2e.conftest import Net
from tests.e2e.faultfront import FAULTS, FaultFront, fault_front

# scenario → (the fault that must fail it, words of the finding that name the fault)
EXPECTED: dict[str, tuple[str, str]] = {
    "dicom.kos.dciodvfy": ("kos-missing-content-date", "ContentDate"),
    "dicom.kos.ins": ("kos-wrong-issuer", "HOPITAL-LOCAL"),
    "dicom.kos.retrieve-url": ("kos-no-retrieve-url", "no RetrieveURL"),
    "dicom.kos.every-instance": ("kos-drop-instance", "missing 1"),
    "xds.metadata.codes": ("xds-wrong-type-code", "typeCode"),
    "xds.metadata.patient": ("xds-patient-local-id", "not an INS OID"),
    "xds.metadata.reference-ids": ("xds-no-accession", "no accession"),
    "xds.iti18.metadata": ("xds-wrong-type-code", "11528-7"),
    "xds.iti18.authors": ("xds-author-not-rpps", "is not an IdNatPS"),
    "xds.registry.bad-patient-id": ("registry-accepts-bad-submissions", "ResponseStatusType:Success"),
    "xds.registry.missing-type-code": ("registry-accepts-bad-submissions", "ResponseStatusType:Success"),
    "xds.registry.unknown-class-code": ("registry-accepts-bad-submissions", "ResponseStatusType:Success"),
    "xds.registry.bad-reference-ids": ("registry-accepts-bad-submissions", "ResponseStatusType:Success"),
    "cross.report-kos-images-xds": ("kos-wrong-accession", "FAULT0000"),
    "dicomweb.source.retrieve-urls": ("retrieve-drop-instance", "3 instances served"),
    "dicomweb.source.kos-header-required": ("ignore-kos-header", "no KOS-SOPInstanceUID header: answered 200"),
    "dicomweb.source.manifest-scope": ("ignore-kos-header", "a study outside the KOS: answered 404"),
    "trust.unauthenticated": ("serve-without-token", "without a token answered 200"),
    "trust.forged-token": ("accept-any-token", "unknown key answered 200"),
    "trust.unlisted-peer": ("ignore-trust-list", "not on the trust list answered 200"),
    "trust.client-certificate": ("no-client-certificate", "without a client certificate"),
    "trust.corrupted-list": ("install-unsigned-list", "installed the corrupted list"),
    "trust.audit": ("ignore-kos-header", "no AuditEvent records the refused"),
    "trust.registry-list": ("registry-unsigned-list", "not signed"),
    "perf.source.retrieve": ("slow-first-byte", "latency to the first image"),
    "consumer.contextual-call": ("call-accepts-invalid-traits", "wrong control key answered 303"),
    "consumer.portal-login": ("portal-without-login", "answered 200 without login"),
    "perf.consumer.export": ("export-truncated", "not a complete zip"),
}
# faults whose scenario is already above, checked too (each fault of the front must fail something)
MORE: dict[str, tuple[str, str]] = {
    "call-ignores-consent": ("consumer.contextual-call", "without the patient's consent answered 303"),
    "call-ins-in-location": ("consumer.contextual-call", "carries the patient's identity"),
}
_CASES = sorted([(scenario, fault, words) for scenario, (fault, words) in EXPECTED.items()]
                + [(scenario, fault, words) for fault, (scenario, words) in MORE.items()])
_PROFILES = ("drimm-source", "drimm-consumer", "registry")
_IMAGES = "4"

Certify = Callable[..., Run]


@pytest.fixture(scope="module")
def front(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultFront]:
    with fault_front(net.endpoints, net.settings("site-a"), tmp_path_factory.mktemp("fault-front")) as served:
        yield served


@pytest.fixture(scope="module")
def kit(net: Net, front: FaultFront, tmp_path_factory: pytest.TempPathFactory) -> Certify:
    """Run the kit against the front with ``fault`` on; the data is produced on the first run, then kept."""
    data = tmp_path_factory.mktemp("certify-kit-data")
    token, consumer_token = net.token(client="tool"), net.token(client="site-a")  # site A's users: its own client

    def run(tmp_path: Path, fault: str | None, *scenarios: str) -> Run:
        feed = f"127.0.0.1:{free_port('127.0.0.1')}"
        front.set(fault, feed=f"http://{feed}/whitelist")
        try:
            return certify(tmp_path, "--endpoints", str(front.endpoints_file), "--site", "site-a",
                           "--token", token, "--consumer-token", consumer_token,
                           *(a for p in _PROFILES for a in ("--profile", p)),
                           *(a for s in scenarios for a in ("--scenario", s)), "--ct-images", _IMAGES,
                           "--data-dir", str(data), "--viewing-min", "0.01", "--export-min", "0.01",
                           "--trust-list-feed", feed, "--trust-list-wait", "10")
        finally:
            front.set(None)
    return run


def test_every_scenario_has_a_fault() -> None:
    covered = set(EXPECTED) | set(GENERIC_EXPECTED)
    assert covered == {s.id for s in all_scenarios()}, {s.id for s in all_scenarios()} ^ covered
    assert {fault for _, fault, _ in _CASES} == set(FAULTS)


def test_no_fault_every_scenario_passes_through_the_front(kit: Certify, tmp_path: Path) -> None:
    run = kit(tmp_path, None, *EXPECTED)
    assert set(run.cases) == set(EXPECTED)
    failed = {k: c.failure for k, c in run.cases.items() if c.verdict != "pass"}
    assert not failed, failed


@pytest.mark.parametrize(("scenario", "fault", "words"), _CASES)
def test_fault_fails_its_scenario(kit: Certify, tmp_path: Path, scenario: str, fault: str, words: str) -> None:
    run = kit(tmp_path, fault, scenario)
    case = run.cases[scenario]
    assert case.verdict == "fail", (fault, run.output)
    assert words in case.failure, (fault, case.failure)
    assert case.evidence  # the exchange, tool output or data that shows it
    assert run.exit_code == 1
