"""Acceptance (issue 8) on the demo network: a screening second read from request to result.

Site A publishes a current and a prior 4-view screening mammography of a woman of this module's own (so
that no other test of the session has put her images in a cache). Site A — L1 site and programme (CRCDC)
in the demo — takes a second-read request (validated against the registry and the images' headers) and
assigns it round-robin, which skips the L1 reader and gives it to RPPS 20202020202 at site B; site B's
node, with no user present, prefetches the exam and its prior from site A into its cache with its own
credential, under the KOS grants the programme issued. The reader logs in at site B (the demo's OpenID
Connect provider), finds the case ready on the worklist, opens it in OHIF (headless Chromium): the four
views of the current exam and the four of the prior are drawn, each view's burnt-in marker found at its
expected place in the screenshot, and not one instance more is asked of site A (the viewer reads the
cache). The reader records the L2 reading in the page; the result SR reaches the programme and the L1
site. Refusals, the CLI and the programme's pages are checked on the same network.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from drimbox.cli import app
from drimbox.config import DimseSettings, LocalAE
from drimbox.pacs import PacsClient
from drimbox.testdata import GeneratedStudy, make_patient, write_mammography_study
from drimbox.testdata.identity import Patient
from drimbox.testdata.mammography import marker_specs
from drimbox.trust.audit import AuditEvent, event_from_body, read_records
from tests.browser.harness import new_viewer_context, viewport_geometry, wait_for_images
from tests.browser.markers import find_markers, load_gray
from tests.e2e.conftest import Net, _wait_published

MIN_NCC = 0.9
L1_RPPS, L2_RPPS = "10101010101", "20202020202"


@dataclass(frozen=True)
class Screened:
    """A woman with a current and a prior screening mammography published by site A."""

    patient: Patient
    current: GeneratedStudy
    prior: GeneratedStudy


@pytest.fixture(scope="module")
def screened(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Screened:
    """This module's woman: her two exams C-STOREd into site A's PACS, reported, published (KOS)."""
    root = tmp_path_factory.mktemp("screened")
    patient = make_patient(81, sex="F", with_ins=True)
    current = write_mammography_study(root / "current", patient, seed=81, study_date="20261120",
                                      series_per_view=True, voi_lut_function=None)
    prior = write_mammography_study(root / "prior", patient, seed=82, study_date="20241115",
                                    series_per_view=True, voi_lut_function=None)
    site = net.network.sites[0]
    client = PacsClient(local=LocalAE(aet=site.node_aet, host=site.address, port=site.dimse_port),
                        remote=net.network.orthanc(site.name).remote_ae(), dimse=DimseSettings())
    try:
        for study in (current, prior):
            client.store(study.files)
            assert net.network.send_report(site.name, study) == "AA"
    finally:
        client.close()
    _wait_published(net.endpoints, net.token(), [patient], 2)
    return Screened(patient, current, prior)


def _views(study: GeneratedStudy) -> tuple[str, dict[str, str]]:
    """Study Instance UID and SOP Instance UID → view (``RCC``…) of a generated mammography."""
    views = {}
    for path in study.files:
        ds = dcmread(path, stop_before_pixels=True)
        views[str(ds.SOPInstanceUID)] = f"{ds.ImageLaterality}{ds.ViewPosition}"
    assert sorted(views.values()) == ["LCC", "LMLO", "RCC", "RMLO"], views
    return study.study_instance_uid, views


def _request_body(patient: Patient, study_uid: str, *, right: int = 1, left: int = 2) -> dict[str, Any]:
    born = patient.birth_date
    return {
        "study_uid": study_uid,
        "patient": {"ins": patient.ins, "ins_oid": patient.ins_oid, "family_name": patient.family,
                    "given_name": patient.given, "birth_date": f"{born[:4]}-{born[4:6]}-{born[6:]}",
                    "sex": patient.sex if patient.sex in ("F", "M") else "U"},
        "l1": {"reader_rpps": L1_RPPS, "reader_name": "Dr Test Radiologue", "date": "2026-12-01",
               "notes": "Seins denses, pas d'anomalie.",
               "breasts": [{"laterality": "R", "category": right, "density": "C"},
                           {"laterality": "L", "category": left, "density": "C"}]},
    }


def _client(net: Net, site: str, rpps: str) -> httpx.Client:
    """A practitioner of ``site`` calling its own node (a token of the site's OIDC client)."""
    return httpx.Client(base_url=net.node(site)["base_url"], timeout=60,
                        headers={"Authorization": f"Bearer {net.token(rpps=rpps, client=site)}"})


def _served_by_site_a(net: Net, studies: set[str]) -> list[AuditEvent]:
    """What site A's network face served of these studies (instances, metadata), from its audit trail."""
    path = net.settings("site-a").storage.data_dir / "audit.sqlite"
    events = (event_from_body(r.body) for r in read_records(path))
    return [e for e in events if e.action.startswith("wado.") and e.action.endswith("-served")
            and e.study_uid in studies]


def _login(page: Any, net: Net, account: dict[str, str]) -> None:
    page.wait_for_selector("input[name=login]", timeout=30000)
    page.fill("input[name=login]", account["rpps"])
    page.fill("input[name=password]", account["password"])
    page.click("button:has-text('Se connecter')")
    page.click("button:has-text('Autoriser')", timeout=15000)


def test_second_read_request_prefetch_reading_in_ohif_and_result(
    net: Net, screened: Screened, chromium: Any, artefacts_dir: Path, browser_report: Callable[[str], None],
) -> None:
    started = time.monotonic()
    site_b = net.node("site-b")["base_url"]
    current_uid, current_views = _views(screened.current)
    prior_uid, prior_views = _views(screened.prior)
    l1, reader = _client(net, "site-a", L1_RPPS), _client(net, "site-b", L2_RPPS)

    # Request at the programme (site A): validated against the registry and site A's image headers.
    created = l1.post("/api/screening/requests", json=_request_body(screened.patient, current_uid))
    assert created.status_code == 201, created.text
    assert created.headers["x-screening-pilot"].startswith("Pilote sous d")
    request = created.json()
    assert request["status"] == "requested" and request["kos_uid"]

    # Refused: its own L1 reader.
    own = l1.post(f"/api/screening/requests/{request['id']}/assign", json={"reader_rpps": L1_RPPS})
    assert own.status_code == 400, own.text
    assert f"RPPS {L1_RPPS} is the L1 reader of this exam" in own.json()["detail"]

    # Round-robin skips the L1 reader: the case goes to site B's reader, whose node starts prefetching.
    assigned = l1.post(f"/api/screening/requests/{request['id']}/assign", json={})
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["reader_rpps"] == L2_RPPS

    deadline = time.monotonic() + 60
    while True:
        worklist = reader.get("/api/screening/worklist")
        assert worklist.status_code == 200, worklist.text
        case = next(c for c in worklist.json() if c["id"] == request["id"])
        if case["ready"] or case["prefetch_error"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    prefetch_s = time.monotonic() - started
    assert case["prefetch_error"] is None
    assert case["ready"] and case["status"] == "prefetched", case
    assert case["priors"] == [prior_uid]
    served_before_opening = _served_by_site_a(net, {current_uid, prior_uid})
    to_site_b = [e for e in served_before_opening if e.node == net.network.sites[1].address]
    instances = {uid for e in to_site_b if e.action == "wado.instance-served" for uid in e.sop_instance_uids}
    assert instances == set(current_views) | set(prior_views)
    # No user was there: site B fetched as itself (its own token), admitted under the programme's KOS grants.
    assert all(e.detail.startswith("grant ") for e in to_site_b), [e.detail for e in to_site_b]
    assert l1.get(f"/api/screening/requests/{request['id']}").json()["status"] == "prefetched"

    # The reader at site B: login, worklist, case, viewer.
    account = json.loads((net.workdir / "idp.json").read_text())["accounts"][1]
    assert account["rpps"] == L2_RPPS
    shot = artefacts_dir / "site-b-screening-current-and-prior.png"
    context = new_viewer_context(chromium)
    try:
        page = context.new_page()
        page.goto(f"{site_b}/screening/worklist")
        _login(page, net, account)
        page.wait_for_url(f"{site_b}/screening/worklist", timeout=30000)
        row = page.locator(f"tr[data-case='{request['id']}']")
        assert row.get_attribute("data-ready") == "yes"
        row.locator("a.open").click()
        page.wait_for_url(f"**/screening/cases/{request['id']}", timeout=15000)
        opened = time.monotonic()
        page.locator("a.view").click()
        page.wait_for_url("**/viewer?**", timeout=30000)
        assert "hangingProtocolId=@drimbox/hpMammoPrior" in page.url
        assert f"StudyInstanceUIDs={current_uid},{prior_uid}" in page.url
        timing = wait_for_images(page, viewports=8, started=opened, timeout_s=90)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot))
        geometry = [v for v in viewport_geometry(page) if v.corners is not None and v.sop_instance_uid]
        assert len(_served_by_site_a(net, {current_uid, prior_uid})) == len(served_before_opening)  # B's cache

        # The L2 reading, in the case page's form.
        page.goto(f"{site_b}/screening/cases/{request['id']}")
        page.select_option("select[name=R_category]", "1")
        page.select_option("select[name=R_density]", "C")
        page.select_option("select[name=L_category]", "2")
        page.select_option("select[name=L_density]", "C")
        page.select_option("select[name=outcome]", "normal")
        page.fill("textarea[name=notes]", "Concordant, retour au dépistage.")
        page.click("button[type=submit]")
        page.wait_for_selector("p.concordant", timeout=30000)
    finally:
        context.close()

    specs = marker_specs("small")
    found = {**{f"current {k}": v for k, v in find_markers(load_gray(shot), geometry, current_views, specs).items()},
             **{f"prior {k}": v for k, v in find_markers(load_gray(shot), geometry, prior_views, specs).items()}}
    browser_report(f"screening second read: request → prefetched at site B {prefetch_s:.2f} s; case opened → "
                   f"8 views drawn {timing.all_images_s:.2f} s (first {timing.first_image_s:.2f} s); {shot}")
    for view, match in sorted(found.items()):
        browser_report(f"  {view}: NCC {match.score:.3f} (error {match.error_px:.1f} px)")
    expected = {f"{when} {v}" for when in ("current", "prior") for v in ("RCC", "LCC", "RMLO", "LMLO")}
    assert set(found) == expected, f"views shown: {sorted(found)}"
    for view, match in found.items():
        assert match.score >= MIN_NCC, f"{view}: marker NCC {match.score:.3f} at its expected place {match.expected}"
        assert match.found_where_expected, f"{view}: best match at {match.found}, expected {match.expected}"
    # Current above prior, view by view.
    tops = {name: m.expected[1] for name, m in found.items()}
    assert all(tops[f"current {v}"] < tops[f"prior {v}"] for v in ("RCC", "LCC", "RMLO", "LMLO"))

    # The result: at the programme, at the L1 site, and as an SR.
    result = l1.get(f"/api/screening/requests/{request['id']}").json()
    assert result["status"] == "done" and result["l2"]["outcome"] == "normal"
    assert result["l2"]["reader_rpps"] == L2_RPPS and result["discordant"] is False
    received = l1.get("/api/screening/results", params={"study_uid": current_uid}).json()
    assert [(r["request_id"], r["ins"], r["l2"]["outcome"]) for r in received] == [
        (request["id"], screened.patient.ins, "normal")]
    again = reader.post(f"/api/screening/cases/{request['id']}/deliver")  # a repeated delivery changes nothing
    assert again.status_code == 200 and again.json()["delivery_error"] is None, again.text
    assert len(l1.get("/api/screening/results", params={"study_uid": current_uid}).json()) == 1
    sr = pydicom.dcmread(io.BytesIO(reader.get(f"/api/screening/cases/{request['id']}/result.dcm").content))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.StudyInstanceUID == current_uid
    dashboard = l1.get("/api/screening/dashboard").json()
    assert dashboard["counts"]["done"] >= 1 and dashboard["turnaround_median_s"] > 0
    browser_report(f"screening acceptance: {time.monotonic() - started:.1f} s in all")


@pytest.mark.parametrize("what", ["ct", "acr4", "category"])
def test_refusals_are_clear(net: Net, screened: Screened, what: str) -> None:
    current_uid = screened.current.study_instance_uid
    client = _client(net, "site-a", L1_RPPS)
    if what == "ct":
        ct = dcmread(next((net.workdir / "samples" / "ct").rglob("*.dcm")), stop_before_pixels=True)
        body = _request_body(net.ct_patient, str(ct.StudyInstanceUID))
        answer = client.post("/api/screening/requests", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"].startswith("not a screening mammography")
        assert answer.json()["problems"] == ["the exam's modalities are CT, not MG"]
    elif what == "acr4":
        answer = client.post("/api/screening/requests", json=_request_body(screened.patient, current_uid, left=4))
        assert answer.status_code == 400, answer.text
        assert answer.json()["problems"] == ["left breast: ACR 4 (a second read is for ACR 1 or 2)"]
    else:
        answer = client.post("/api/screening/requests", json=_request_body(screened.patient, current_uid, right=7))
        assert answer.status_code == 422, answer.text
        error = answer.json()["detail"][0]
        assert error["loc"][-1] == "category" and "less than or equal to 5" in error["msg"]


def test_cli_request_refusal_and_dashboard(net: Net, screened: Screened, tmp_path: Path) -> None:
    runner = CliRunner()
    config = net.node("site-a")["config"]
    token = net.token(rpps=L1_RPPS, client="site-a")
    patient = screened.patient
    born = patient.birth_date
    current_uid = screened.current.study_instance_uid
    refused = runner.invoke(app, [
        "screening", "request", "--config", config, "--token", token, "--study", current_uid, "--ins", patient.ins,
        "--ins-oid", patient.ins_oid, "--family", patient.family, "--given", patient.given,
        "--birth-date", f"{born[:4]}-{born[4:6]}-{born[6:]}", "--l1-rpps", L1_RPPS, "--right", "1B", "--left", "5D"])
    assert refused.exit_code == 1, refused.output
    assert "left breast: ACR 5 (a second read is for ACR 1 or 2)" in refused.output
    out = tmp_path / "screening.csv"
    shown = runner.invoke(app, ["screening", "dashboard", "--config", config, "--token", token, "--csv", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "Pilote sous dérogation" in shown.output and "turnaround over" in shown.output
    assert out.read_text().startswith("request_id,study_uid,ins,")


@pytest.mark.parametrize(("lang", "title"), [("fr", "tableau de bord"), ("en", "dashboard")])
def test_programme_and_results_pages(net: Net, lang: str, title: str) -> None:
    client = _client(net, "site-a", L1_RPPS)
    board = client.get("/screening/programme", params={"lang": lang})
    assert board.status_code == 200, board.text
    assert title in board.text and "arrêté du 16 janvier 2024" in board.text
    assert 'href="/api/screening/dashboard.csv"' in board.text
    results = client.get("/screening/results", params={"lang": lang})
    assert results.status_code == 200, results.text
    # Site B is a reader's node, not the programme: its dashboard is refused, in words.
    refused = _client(net, "site-b", L2_RPPS).get("/screening/programme", params={"lang": lang})
    assert refused.status_code == 403 and "does not play the screening programme" in refused.text
