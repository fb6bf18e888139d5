"""F9: OHIF served by a node shows a screening mammogram with ``@ohif/hpMammo``, each view where it belongs.

A real node (dev-mode authentication: no TLS here, and the login is not what this test is about) in
front of a real Orthanc holding a 4-view mammogram with one series per view; the site face serves OHIF
(:mod:`drimbox.viewer`) and its own ``/dicom-web``. Headless Chromium opens
``/viewer?StudyInstanceUIDs=…&hangingProtocolId=@ohif/hpMammo``; in the screenshot (kept as a test
artefact) each view's burnt-in marker must be found, by normalised cross-correlation ≥ 0.9, at the place
the image's position in its viewport puts it — R CC top left, L CC top right, R MLO bottom left, L MLO
bottom right, hung as stored (chest walls facing each other), no flip.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from drimbox.config import LocalAE, load_settings
from drimbox.devnet.orthanc import OrthancProcess
from drimbox.devnet.ports import free_port
from drimbox.node import Node
from drimbox.testdata import GeneratedStudy, make_patient, marker_specs, write_mammography_study
from drimbox.viewer import default_ohif_dist, mount_viewer
from tests.browser.harness import new_viewer_context, open_viewer, viewport_geometry
from tests.browser.markers import find_markers, load_gray

HOST = "127.0.0.2"
MIN_NCC = 0.9
HP_MAMMO_LAYOUT = {"RCC": (0, 0), "LCC": (0, 1), "RMLO": (1, 0), "LMLO": (1, 1)}
"""(row, column) of each view in @ohif/hpMammo's 2x2 first stage."""


@pytest.fixture(scope="module")
def mammo(tmp_path_factory: pytest.TempPathFactory) -> GeneratedStudy:
    """A small 4-view mammogram, one series per view, as the demo publishes it."""
    return write_mammography_study(tmp_path_factory.mktemp("browser-mg"), make_patient(71, sex="F", with_ins=True),
                                   seed=71, series_per_view=True, voi_lut_function=None)


def _serve(app: FastAPI, port: int) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def site(orthanc_a_clean: OrthancProcess, node_ae: LocalAE, mammo: GeneratedStudy, tmp_path: Path) -> Iterator[str]:
    """A node's site face (OHIF + /dicom-web over Orthanc's REST fast path), the mammogram in its PACS."""
    assert (default_ohif_dist() / "index.html").is_file(), "OHIF is not installed: run scripts/setup.sh"
    orthanc_a_clean.upload(mammo.files)
    port = free_port(HOST)
    settings = load_settings(None, name="browser-site", local=node_ae.model_dump(),
                             pacs=orthanc_a_clean.remote_ae().model_dump(), http={"host": HOST, "port": port},
                             auth={"dev_mode": True}, storage={"data_dir": str(tmp_path / "node")},
                             dicomweb={"backend": "orthanc"})
    node = Node(settings)
    if not any(getattr(route, "path", None) == "/app-config.js" for route in node.site_app.routes):
        mount_viewer(node.site_app, settings)  # until drimbox.app mounts the viewer itself
    try:
        yield from _serve(node.site_app, port)
    finally:
        node.stop()


def _report(path: Path, **content: Any) -> None:
    path.write_text(json.dumps(content, indent=2, default=str))


def test_hp_mammo_shows_each_marker_where_expected(chromium: Any, site: str, mammo: GeneratedStudy,
                                                   artefacts_dir: Path, browser_report: Callable[[str], None]) -> None:
    url = f"{site}/viewer?StudyInstanceUIDs={mammo.study_instance_uid}&hangingProtocolId=@ohif/hpMammo"
    shot = artefacts_dir / "hp-mammo-4-views.png"
    context = new_viewer_context(chromium)
    try:
        page = context.new_page()
        timing = open_viewer(page, url, viewports=4, screenshot=shot, timeout_s=60)
        geometry = [v for v in viewport_geometry(page) if v.corners is not None and v.sop_instance_uid]
    finally:
        context.close()
    views_by_sop = {i.sop_instance_uid: view for i, view in
                    zip(mammo.instances, ("RCC", "LCC", "RMLO", "LMLO"), strict=True)}
    matches = find_markers(load_gray(shot), geometry, views_by_sop, marker_specs("small"))
    _report(shot.with_suffix(".json"), url=url, timing=asdict(timing),
            matches={view: {**asdict(m), "error_px": m.error_px} for view, m in matches.items()},
            viewports=[asdict(v) for v in geometry])
    browser_report(f"hpMammo: first image {timing.first_image_s:.2f} s, all four {timing.all_images_s:.2f} s "
                   f"after navigation (fresh profile); screenshot {shot}")
    for view, match in sorted(matches.items()):
        browser_report(f"  {view}: NCC {match.score:.3f} at {match.expected} "
                       f"(best {match.found_score:.3f} at {match.found}, error {match.error_px:.1f} px, "
                       f"mirrored {match.mirrored_score:.3f}, scale {match.scale:.2f})")

    assert set(matches) == set(HP_MAMMO_LAYOUT), f"views shown: {sorted(matches)}"
    # Layout: which view is in which quadrant of the grid (by the viewports' canvas positions).
    by_view = {views_by_sop[v.sop_instance_uid or ""]: v for v in geometry}
    lefts = sorted({round(v.canvas_box[0]) for v in by_view.values()})
    tops = sorted({round(v.canvas_box[1]) for v in by_view.values()})
    for view, (row, col) in HP_MAMMO_LAYOUT.items():
        box = by_view[view].canvas_box
        assert (tops.index(round(box[1])), lefts.index(round(box[0]))) == (row, col), view
    for view, match in matches.items():
        assert match.score >= MIN_NCC, f"{view}: marker NCC {match.score:.3f} at its expected place {match.expected}"
        assert match.found_where_expected, f"{view}: best match at {match.found}, expected {match.expected}"
        assert match.mirrored_score < match.score - 0.1, f"{view}: a mirrored marker matches as well"
