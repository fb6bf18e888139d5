"""Finding the burnt-in mammography markers in a screenshot of a viewer (numpy only).

For each view, the marker's template is rendered from :func:`~drimbox.testdata.marker_specs` exactly as
the generator burns it into the pixels (white glyph on a black box one cell wider), scaled to the size
the image is displayed at (bilinearly, at the displayed sub-pixel phase, as the viewer draws it), and
located by normalised cross-correlation (NCC) over the whole viewport that shows the view. The
*expected* place is the marker's position in the image mapped through the displayed image's bounding
box (read from Cornerstone, see :func:`tests.browser.harness.viewport_geometry`) and the display
transform the hanging protocol is expected to apply (none for ``@ohif/hpMammo``'s first stage: images
are hung as stored). Only the box comes from the viewer: the orientation is
checked in the pixels — a flipped or rotated image puts a mirrored glyph elsewhere, which scores low
at the expected place, and the four glyphs differ, so a view in the wrong viewport scores low too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from drimbox.testdata import MarkerSpec
from tests.browser.harness import ImageViewport

__all__ = ["DisplayTransform", "MarkerMatch", "find_markers", "load_gray", "marker_template", "ncc_map"]

Gray = npt.NDArray[np.float64]
_BORDER_PX = 3
"""The active viewport's highlight (1-2 px, inside the canvas) is left out of the search."""


@dataclass(frozen=True)
class DisplayTransform:
    """How the viewer is expected to show an image: quarter turns clockwise, then flips."""

    rotation: int = 0
    flip_horizontal: bool = False
    flip_vertical: bool = False

    def apply(self, u: float, v: float) -> tuple[float, float]:
        """Normalised image coordinates (column, row fractions) → normalised display coordinates."""
        x, y = u, v
        match self.rotation % 360:
            case 90:
                x, y = 1 - v, u
            case 180:
                x, y = 1 - u, 1 - v
            case 270:
                x, y = v, 1 - u
        if self.flip_horizontal:
            x = 1 - x
        if self.flip_vertical:
            y = 1 - y
        return x, y

    def pixels(self, image: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """An image (rows x columns) as it would be displayed."""
        out = np.rot90(image, -(self.rotation // 90))
        if self.flip_horizontal:
            out = out[:, ::-1]
        if self.flip_vertical:
            out = out[::-1, :]
        return np.ascontiguousarray(out)

    @property
    def swaps_axes(self) -> bool:
        """A quarter turn: displayed width comes from the image's rows."""
        return self.rotation % 180 == 90


@dataclass(frozen=True)
class MarkerMatch:
    """Where a view's marker was looked for and found, in screenshot pixels."""

    view: str
    viewport_id: str
    expected: tuple[int, int]
    """Top-left (x, y) of the marker box where it should be."""
    score: float
    """Best NCC within ``tolerance`` of ``expected``: the test's criterion."""
    found: tuple[int, int]
    """Top-left (x, y) of the best NCC anywhere in the viewport."""
    found_score: float
    mirrored_score: float
    """Best NCC of the left-right mirrored template anywhere in the viewport (should be clearly lower)."""
    tolerance: int
    scale: float
    """Displayed pixels per image pixel."""

    @property
    def error_px(self) -> float:
        """Distance between the expected and the found place."""
        return float(np.hypot(self.found[0] - self.expected[0], self.found[1] - self.expected[1]))

    @property
    def found_where_expected(self) -> bool:
        """The best match anywhere in the viewport is at the expected place."""
        return self.error_px <= self.tolerance * np.sqrt(2)


def load_gray(path: Path) -> Gray:
    """A screenshot as luminance (0-255 floats)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float64)


def marker_template(spec: MarkerSpec) -> Gray:
    """The marker as burnt into the pixels: white glyph (255) in a black box (0) one cell wider all round."""
    return np.pad(spec.mask().astype(np.float64) * 255.0, spec.cell)


def _scaled(template: Gray, scale: tuple[float, float], offset: tuple[float, float], size: tuple[int, int]) -> Gray:
    """The template as a viewer with linear interpolation draws it: sampled bilinearly at display pixel centres.

    ``scale`` is display pixels per template pixel (y, x); ``offset`` where the template's top-left edge
    falls relative to the first output pixel's top-left edge (display pixels, may be fractional);
    ``size`` the output (height, width). Outside the template, its edge values are repeated.
    """
    def axis(n: int, factor: float, shift: float, length: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                                      npt.NDArray[np.float64]]:
        source = np.clip((np.arange(n) + 0.5 - shift) / factor - 0.5, 0, length - 1)
        low = np.floor(source).astype(np.intp)
        high = np.minimum(low + 1, length - 1)
        return low, high, source - low

    r0, r1, fr = axis(size[0], scale[0], offset[0], template.shape[0])
    c0, c1, fc = axis(size[1], scale[1], offset[1], template.shape[1])
    top = template[np.ix_(r0, c0)] * (1 - fc) + template[np.ix_(r0, c1)] * fc
    bottom = template[np.ix_(r1, c0)] * (1 - fc) + template[np.ix_(r1, c1)] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def ncc_map(image: Gray, template: Gray) -> Gray:
    """Normalised cross-correlation of ``template`` at every position where it fits inside ``image``.

    FFT correlation for the numerator, integral images for the local means and energies; flat windows
    (no variance) score 0.
    """
    th, tw = template.shape
    ih, iw = image.shape
    if th > ih or tw > iw:
        raise ValueError(f"template {template.shape} larger than the search area {image.shape}")
    t = template - template.mean()
    t_norm = float(np.sqrt((t**2).sum()))
    shape = (ih + th - 1, iw + tw - 1)
    spectrum = np.fft.rfft2(image, shape) * np.fft.rfft2(t[::-1, ::-1], shape)
    numerator = np.fft.irfft2(spectrum, shape)[th - 1 : ih, tw - 1 : iw]

    def window_sums(values: Gray) -> Gray:
        integral = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return integral[th:, tw:] - integral[:-th, tw:] - integral[th:, :-tw] + integral[:-th, :-tw]

    n = th * tw
    s1, s2 = window_sums(image), window_sums(image**2)
    variance = np.maximum(s2 - s1**2 / n, 0.0)
    denominator = np.sqrt(variance) * t_norm
    out = np.zeros_like(numerator)
    ok = denominator > 1e-6 * max(t_norm, 1.0) * np.sqrt(n)
    out[ok] = numerator[ok] / denominator[ok]
    return out


def find_markers(screenshot: Gray, viewports: Sequence[ImageViewport], views_by_sop: Mapping[str, str],
                 specs: Mapping[str, MarkerSpec], *, transforms: Mapping[str, DisplayTransform] | None = None,
                 pixel_ratio: float = 1.0) -> dict[str, MarkerMatch]:
    """Locate each view's marker in the viewport showing that view.

    ``views_by_sop`` maps the SOP Instance UID of each generated view to its name (``RCC``…);
    ``transforms`` the display transform expected per view (default: as stored); ``pixel_ratio``
    screenshot pixels per CSS pixel. Viewports showing no known view are ignored; a view shown nowhere
    is simply absent from the result (the caller asserts on the set of views).
    """
    found: dict[str, MarkerMatch] = {}
    for viewport in viewports:
        view = views_by_sop.get(viewport.sop_instance_uid or "")
        if view is None or viewport.corners is None or viewport.image_size is None:
            continue
        spec, transform = specs[view], (transforms or {}).get(view, DisplayTransform())
        rows, cols = viewport.image_size
        left, top, right, bottom = (value * pixel_ratio for value in viewport.image_box())
        disp_cols, disp_rows = (rows, cols) if transform.swaps_axes else (cols, rows)
        scale_x, scale_y = (right - left) / disp_cols, (bottom - top) / disp_rows
        # The marker box (glyph + one-cell margin) in normalised image coordinates, through the transform.
        c = spec.cell
        r0, c0, r1, c1 = spec.row - c, spec.col - c, spec.row + spec.height + c, spec.col + spec.width + c
        corners = [transform.apply(cc / cols, rr / rows) for rr in (r0, r1) for cc in (c0, c1)]
        x0 = left + min(x for x, _ in corners) * (right - left)
        y0 = top + min(y for _, y in corners) * (bottom - top)
        template = transform.pixels(marker_template(spec))
        height, width = round(template.shape[0] * scale_y), round(template.shape[1] * scale_x)
        ex_page, ey_page = round(x0), round(y0)
        scaled = _scaled(template, (scale_y, scale_x), (y0 - ey_page, x0 - ex_page), (height, width))
        # Search the whole canvas of this viewport (less its highlight border).
        cl, ct, cw, ch = (value * pixel_ratio for value in viewport.canvas_box)
        sx0, sy0 = int(np.ceil(cl)) + _BORDER_PX, int(np.ceil(ct)) + _BORDER_PX
        sx1 = min(int(cl + cw) - _BORDER_PX, screenshot.shape[1])
        sy1 = min(int(ct + ch) - _BORDER_PX, screenshot.shape[0])
        area = screenshot[sy0:sy1, sx0:sx1]
        scores = ncc_map(area, scaled)
        mirrored = ncc_map(area, scaled[:, ::-1])
        ex, ey = ex_page - sx0, ey_page - sy0
        tolerance = max(3, round(c * max(scale_x, scale_y) / 2))
        near = scores[max(ey - tolerance, 0) : ey + tolerance + 1, max(ex - tolerance, 0) : ex + tolerance + 1]
        best = np.unravel_index(int(np.argmax(scores)), scores.shape)
        found[view] = MarkerMatch(
            view=view, viewport_id=viewport.viewport_id, expected=(round(x0), round(y0)),
            score=float(near.max()) if near.size else float("-inf"),
            found=(int(best[1]) + sx0, int(best[0]) + sy0), found_score=float(scores.max()),
            mirrored_score=float(mirrored.max()), tolerance=tolerance, scale=(scale_x + scale_y) / 2,
        )
    return found
