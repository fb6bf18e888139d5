"""Acceptance (issue 6) in a real browser: the practitioner's software posts the contextual call to
site B, the radiologist logs in through the demo's OpenID Connect provider, opens the screening
mammography that site A published, and OHIF (served by site B, streaming from site A through site
B's /dicom-web) draws the four views — each view's burnt-in marker found at its expected place in
the screenshot (normalised cross-correlation ≥ 0.9), the screenshot kept as a test artefact.

The end-to-end time from the contextual call to the first image drawn is reported in the run summary.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom import dcmread

from drimbox.testdata.mammography import marker_specs
from tests.browser.harness import new_viewer_context, viewport_geometry, wait_for_images
from tests.browser.markers import find_markers, load_gray
from tests.e2e.conftest import Net
from tests.e2e.test_web_pages import _form

MIN_NCC = 0.9


def _views_by_sop(net: Net) -> dict[str, str]:
    """SOP Instance UID → view (``RCC``…) of the demo's current screening mammography, from its files."""
    views = {}
    for path in (net.workdir / "samples" / "mg").rglob("*.dcm"):
        ds = dcmread(path, stop_before_pixels=True)
        views[str(ds.SOPInstanceUID)] = f"{ds.ImageLaterality}{ds.ViewPosition}"
    assert sorted(views.values()) == ["LCC", "LMLO", "RCC", "RMLO"], views
    return views


def _contextual_call_page(action: str, fields: dict[str, str]) -> str:
    """What the practitioner's software does: an auto-submitted form POST to the node."""
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in fields.items())
    return (f'<form id="call" method="post" action="{html.escape(action)}">{inputs}</form>'
            "<script>document.getElementById('call').submit()</script>")


def test_contextual_call_login_and_remote_mammography_in_ohif(
    net: Net, chromium: Any, artefacts_dir: Path, browser_report: Callable[[str], None],
) -> None:
    site_b = net.node("site-b")["base_url"]
    account = json.loads((net.workdir / "idp.json").read_text())["accounts"][0]
    views_by_sop = _views_by_sop(net)
    shot = artefacts_dir / "site-b-remote-mammography.png"
    context = new_viewer_context(chromium)
    try:
        page = context.new_page()
        started = time.monotonic()
        page.set_content(_contextual_call_page(f"{site_b}/contextual-call", _form(net.screened_patient)))
        # No data before login: the call lands on the provider's login form.
        page.wait_for_selector("input[name=login]", timeout=30000)
        page.fill("input[name=login]", account["rpps"])
        page.fill("input[name=password]", account["password"])
        page.click("button:has-text('Se connecter')")
        page.click("button:has-text('Autoriser')", timeout=15000)
        page.wait_for_url(f"{site_b}/portal/patients/**", timeout=30000)
        assert net.screened_patient.family.upper() in page.content().upper()  # the strict INS traits
        exams = page.locator("[data-kos]")
        assert exams.count() == 2  # current and prior screening mammography, newest first
        exams.first.locator("a.view").click()
        page.wait_for_url("**/viewer?**", timeout=30000)
        assert "hangingProtocolId=@ohif/hpMammo" in page.url
        timing = wait_for_images(page, viewports=4, started=started, timeout_s=90)
        page.wait_for_timeout(500)
        page.screenshot(path=str(shot))
        geometry = [v for v in viewport_geometry(page) if v.corners is not None and v.sop_instance_uid]
    finally:
        context.close()
    matches = find_markers(load_gray(shot), geometry, views_by_sop, marker_specs("small"))
    browser_report(f"site B, remote MG from site A: contextual call → first image {timing.first_image_s:.2f} s, "
                   f"all four {timing.all_images_s:.2f} s (login included); screenshot {shot}")
    for view, match in sorted(matches.items()):
        browser_report(f"  {view}: NCC {match.score:.3f} (error {match.error_px:.1f} px)")
    assert set(matches) == {"RCC", "LCC", "RMLO", "LMLO"}, f"views shown: {sorted(matches)}"
    for view, match in matches.items():
        assert match.score >= MIN_NCC, f"{view}: marker NCC {match.score:.3f} at its expected place {match.expected}"
        assert match.found_where_expected, f"{view}: best match at {match.found}, expected {match.expected}"
