"""Viewer latency: time from navigation to the first image drawn, and to all four mammography views.

Runs against a running demo network::

    drimbox demo --workdir /tmp/demo            # in another terminal; wait for its ready lines
    python bench/viewer_first_image.py --workdir /tmp/demo [--site site-a] [--runs 5] [--study UID]

It reads ``DIR/endpoints.json``, gets a practitioner's bearer token from its ``token_command``, finds
the newest MG study on the site's ``/dicom-web`` (QIDO, unless ``--study``), and opens
``<viewer>/viewer?StudyInstanceUIDs=…&hangingProtocolId=@ohif/hpMammo`` in headless Debian Chromium
(Playwright with ``/usr/bin/chromium``, software WebGL; never a downloaded browser), the token sent as
``Authorization`` with every request (the viewer entry and OHIF's DICOMweb calls accept it, as they
accept a login session). Each run uses a fresh browser profile (nothing cached in the browser); the
node's own cache is whatever earlier runs left, so run 1 is the cold one when the study was never
viewed. "Drawn" means every ``canvas.cornerstone-canvas`` counted has enough bright pixels (the
markers), polled every 50 ms. Screenshots of each run go to ``--out`` (default: a temp directory).

Not a test: it only prints. ``--contextual-call`` times the consumer's whole path instead (issue 6,
F5 → F9): each run posts the contextual call for the demo's screened patient to ``--site`` (default
then ``site-b``) as the practitioner's software does (an auto-submitted form), follows it to the patient
page (the bearer token of a site B user stands for the login), opens the newest exam in the viewer and
waits for the four views — streamed from site A through site B's ``/dicom-web`` — timed from the POST.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the harness lives in tests/browser

from drimbox.testdata import make_patient  # noqa: E402
from tests.browser.harness import launch_chromium, new_viewer_context, open_viewer, wait_for_images  # noqa: E402
from tests.e2e.test_viewer_acceptance import _contextual_call_page  # noqa: E402
from tests.e2e.test_web_pages import _form  # noqa: E402


def _token(endpoints: dict[str, object], *extra: str) -> str:
    command = endpoints["token_command"]
    assert isinstance(command, list)
    return subprocess.run([*command, *extra], check=True, capture_output=True, text=True).stdout.strip()


def _contextual_call_run(page: Page, base_url: str, screenshot: Path) -> tuple[float, float]:
    """Contextual call → patient page → newest exam in the viewer → four views drawn (seconds from the POST)."""
    started = time.monotonic()
    page.set_content(_contextual_call_page(f"{base_url}/contextual-call",
                                           _form(make_patient(1, sex="F", with_ins=True))))
    page.wait_for_url(f"{base_url}/portal/patients/**", timeout=60000)
    page.locator("[data-kos]").first.locator("a.view").click()
    page.wait_for_url("**/viewer?**", timeout=60000)
    timing = wait_for_images(page, viewports=4, started=started, timeout_s=120)
    page.screenshot(path=str(screenshot))
    return timing.first_image_s, timing.all_images_s


def _newest_mg(dicomweb: str, token: str) -> str:
    response = httpx.get(f"{dicomweb}/studies", params={"ModalitiesInStudy": "MG"},
                         headers={"Authorization": f"Bearer {token}", "Accept": "application/dicom+json"}, timeout=30)
    response.raise_for_status()
    studies = sorted(response.json(), key=lambda s: s.get("00080020", {}).get("Value", [""])[0], reverse=True)
    if not studies:
        raise SystemExit(f"no MG study at {dicomweb}")
    return str(studies[0]["0020000D"]["Value"][0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the demo's --workdir (endpoints.json)")
    parser.add_argument("--site", default=None, help="default: site-a, or site-b with --contextual-call")
    parser.add_argument("--contextual-call", action="store_true",
                        help="time the consumer's path: contextual call to first image of a remote study")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--study", help="Study Instance UID (default: the newest MG on the site)")
    parser.add_argument("--out", type=Path, default=None, help="where screenshots go")
    args = parser.parse_args()

    endpoints = json.loads((args.workdir / "endpoints.json").read_text())
    site = args.site or ("site-b" if args.contextual_call else "site-a")
    node = next(n for n in endpoints["nodes"] if n["name"] == site)
    token = _token(endpoints, "--client", site)  # a user of that site (what it forwards to sources)
    if args.contextual_call:
        url = f"{node['base_url']}/contextual-call"
    else:
        study = args.study or _newest_mg(node["dicomweb"], token)
        base = node.get("viewer") or node["base_url"] + "/"
        url = urljoin(base, f"viewer?StudyInstanceUIDs={study}&hangingProtocolId=@ohif/hpMammo")
    out = args.out or Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    print(f"{site}: {url}")
    firsts, alls = [], []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for run in range(1, args.runs + 1):
                context = new_viewer_context(browser)
                context.set_extra_http_headers({"Authorization": f"Bearer {token}"})
                try:
                    page = context.new_page()
                    if args.contextual_call:
                        first, every = _contextual_call_run(page, node["base_url"], out / f"run-{run}.png")
                    else:
                        timing = open_viewer(page, url, viewports=4, screenshot=out / f"run-{run}.png",
                                             timeout_s=120)
                        first, every = timing.first_image_s, timing.all_images_s
                finally:
                    context.close()
                firsts.append(first)
                alls.append(every)
                print(f"run {run}: first image {first:.2f} s, all four {every:.2f} s")
                time.sleep(0.5)
        finally:
            browser.close()
    print(f"median over {args.runs}: first image {statistics.median(firsts):.2f} s, "
          f"all four {statistics.median(alls):.2f} s (run 1: {firsts[0]:.2f} / {alls[0]:.2f} s); screenshots in {out}")


if __name__ == "__main__":
    main()
