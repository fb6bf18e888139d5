"""Driving OHIF in headless Chromium: reusable by tests and benchmarks (functions take a page and a URL).

Debian's ``/usr/bin/chromium`` is driven by Playwright's Python package (never ``playwright install``),
with software WebGL (SwiftShader), without which OHIF draws black viewports. Waiting for an image
means polling every ``canvas.cornerstone-canvas`` (2D canvases, so ``getImageData`` works) until
enough bright pixels appear in each: a blank or half-loaded viewer is never taken for a drawn one.

:func:`viewport_geometry` reads, from Cornerstone itself (OHIF exposes it as ``window.cornerstone``),
which instance each viewport shows and where the image's corners land in the page: the image
analysis of :mod:`tests.browser.markers` uses only the image's bounding box from it and finds the
markers (and so the orientation) in the pixels.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Playwright

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "FirstImage",
    "ImageViewport",
    "launch_chromium",
    "new_viewer_context",
    "open_viewer",
    "viewport_geometry",
    "wait_for_images",
]

CHROMIUM = os.environ.get("DRIMBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)
VIEWPORT = {"width": 1600, "height": 1000}
"""Page size: four mammography viewports of ~700 x 440 CSS pixels."""

# OHIF's onboarding tour covers part of the viewport on a first visit; the node's app-config.js marks it
# shown too, this covers viewers served by anything else.
_NO_TOUR = "try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch (e) {}"

_BRIGHT_COUNTS = """
(threshold) => Array.from(document.querySelectorAll('canvas.cornerstone-canvas')).map((canvas) => {
  const rect = canvas.getBoundingClientRect();
  if (rect.width < 8 || rect.height < 8 || canvas.width === 0 || canvas.height === 0) return 0;
  if (rect.top >= window.innerHeight || rect.left >= window.innerWidth) return 0;  // off-screen thumbnail renderers
  try {
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4) { if (data[i] > threshold) n++; }
    return n;
  } catch (e) { return 0; }
})
"""

_GEOMETRY = """
() => {
  const cs = window.cornerstone;
  if (!cs || !cs.getEnabledElements) return null;
  return cs.getEnabledElements().map((enabled) => {
    const viewport = enabled.viewport;
    const canvas = viewport.getCanvas ? viewport.getCanvas() : enabled.viewport.canvas;
    const rect = canvas.getBoundingClientRect();
    const imageId = viewport.getCurrentImageId ? viewport.getCurrentImageId() : null;
    const data = viewport.getImageData ? viewport.getImageData() : null;
    let corners = null, dimensions = null;
    if (data && data.imageData) {
      const [cols, rows] = data.dimensions;
      dimensions = [rows, cols];
      // Outer corners of the pixel grid (pixel centres are at integer indices).
      const index = [[-0.5, -0.5, 0], [cols - 0.5, -0.5, 0], [-0.5, rows - 0.5, 0]];
      corners = index.map((ijk) => viewport.worldToCanvas(data.imageData.indexToWorld(ijk)));
    }
    const instance = imageId ? cs.metaData.get('instance', imageId) : null;
    const camera = viewport.getCamera ? viewport.getCamera() : {};
    return {
      viewportId: enabled.viewportId,
      canvas: {left: rect.left, top: rect.top, width: rect.width, height: rect.height,
               pixelWidth: canvas.width, pixelHeight: canvas.height},
      sopInstanceUid: instance ? instance.SOPInstanceUID : null,
      seriesDescription: instance ? instance.SeriesDescription : null,
      dimensions, corners,
      flipHorizontal: !!camera.flipHorizontal, flipVertical: !!camera.flipVertical,
      rotation: viewport.getViewPresentation ? (viewport.getViewPresentation().rotation || 0) : 0,
    };
  });
}
"""


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Debian Chromium with software WebGL; never a browser Playwright downloaded."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))


def new_viewer_context(browser: Browser, *, cookies: list[dict[str, Any]] | None = None) -> BrowserContext:
    """A fresh profile (no cache, no tour), the harness's page size, ``cookies`` (e.g. a session) preset."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.add_init_script(_NO_TOUR)
    if cookies:
        context.add_cookies(cookies)  # type: ignore[arg-type]
    return context


@dataclass(frozen=True)
class FirstImage:
    """When the viewer showed images, in seconds after navigation started."""

    first_image_s: float
    """The first viewport with an image drawn."""
    all_images_s: float
    """Every expected viewport with an image drawn."""
    bright_pixels: tuple[int, ...]
    """Bright pixel count per ``cornerstone-canvas`` when the wait ended."""


def wait_for_images(page: Page, *, viewports: int, started: float, min_bright: int = 100, threshold: int = 200,
                    timeout_s: float = 60.0, poll_s: float = 0.05) -> FirstImage:
    """Poll the Cornerstone canvases until ``viewports`` of them have ``min_bright`` pixels above ``threshold``.

    ``started`` is the :func:`time.monotonic` of the navigation. Raises ``TimeoutError`` with the counts
    seen last, so a failure says how far the viewer got.
    """
    first: float | None = None
    counts: list[int] = []
    deadline = started + timeout_s
    while True:
        counts = list(page.evaluate(_BRIGHT_COUNTS, threshold))
        now = time.monotonic()
        drawn = sum(c >= min_bright for c in counts)
        if drawn and first is None:
            first = now - started
        if drawn >= viewports:
            assert first is not None
            return FirstImage(first, now - started, tuple(counts))
        if now > deadline:
            raise TimeoutError(f"{drawn}/{viewports} viewports drawn after {timeout_s:.0f} s (bright pixels {counts})")
        time.sleep(poll_s)


def open_viewer(page: Page, url: str, *, viewports: int = 1, screenshot: Path | None = None,
                timeout_s: float = 60.0, settle_s: float = 0.5) -> FirstImage:
    """Navigate to ``url``, wait until ``viewports`` viewports show an image, optionally save a screenshot.

    ``settle_s`` lets the last progressive renders land before the screenshot (Cornerstone may redraw
    once the full-resolution frame arrives).
    """
    started = time.monotonic()
    page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    timing = wait_for_images(page, viewports=viewports, started=started, timeout_s=timeout_s)
    if screenshot is not None:
        page.wait_for_timeout(settle_s * 1000)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot))
    return timing


@dataclass(frozen=True)
class ImageViewport:
    """One Cornerstone viewport as the page lays it out (CSS pixels, page coordinates)."""

    viewport_id: str
    canvas_box: tuple[float, float, float, float]
    """left, top, width, height of the canvas."""
    scale: float
    """Canvas backing pixels per CSS pixel."""
    sop_instance_uid: str | None
    series_description: str | None
    image_size: tuple[int, int] | None
    """rows, columns of the displayed image."""
    corners: tuple[tuple[float, float], ...] | None
    """Canvas coordinates (CSS px) of the image's outer corners: top-left, top-right, bottom-left."""
    flip_horizontal: bool
    flip_vertical: bool
    rotation: float

    def image_box(self) -> tuple[float, float, float, float]:
        """The displayed image's bounding box in page coordinates: left, top, right, bottom."""
        assert self.corners is not None
        (x0, y0), (x1, y1), (x2, y2) = self.corners
        x3, y3 = x1 + x2 - x0, y1 + y2 - y0
        left, top = self.canvas_box[0], self.canvas_box[1]
        xs, ys = (x0, x1, x2, x3), (y0, y1, y2, y3)
        return left + min(xs), top + min(ys), left + max(xs), top + max(ys)


def viewport_geometry(page: Page) -> list[ImageViewport]:
    """Every Cornerstone viewport: its canvas box, instance shown and where the image's corners are."""
    raw = page.evaluate(_GEOMETRY)
    if raw is None:
        raise RuntimeError("window.cornerstone is not available: is this OHIF?")
    out = []
    for v in raw:
        c = v["canvas"]
        out.append(ImageViewport(
            viewport_id=v["viewportId"], canvas_box=(c["left"], c["top"], c["width"], c["height"]),
            scale=c["pixelWidth"] / c["width"] if c["width"] else 1.0,
            sop_instance_uid=v["sopInstanceUid"], series_description=v["seriesDescription"],
            image_size=tuple(v["dimensions"]) if v["dimensions"] else None,  # type: ignore[arg-type]
            corners=tuple((float(p[0]), float(p[1])) for p in v["corners"]) if v["corners"] else None,
            flip_horizontal=v["flipHorizontal"], flip_vertical=v["flipVertical"], rotation=float(v["rotation"]),
        ))
    return out
