"""Screening mammography: the four standard views with a tissue-like texture and a marker each.

By default, one study with **one series of four instances** (RCC, LCC, RMLO, LMLO, in that order),
as several FFDM units do for a screening exam; viewers and hanging protocols must then rely on the
per-image ImageLaterality / ViewCodeSequence rather than on series boundaries, which is the harder
and more useful case to test. With ``series_per_view=True``, **one series per view** (series 1-4,
SeriesDescription ``R CC``, ``L CC``, ``R MLO``, ``L MLO``), as other units do — and as OHIF's
mammography hanging protocol ``@ohif/hpMammo`` needs: it hangs display sets (series), wants more than
two of them, and picks each view by SeriesDescription, ViewCodeSequence and PatientOrientation.

Images are stored the way they are hung (PatientOrientation ``P\\L``, ``A\\R``, ``P\\FL``,
``A\\FR``): right-breast views have the chest wall on the right edge (last column), left-breast
views on the left edge (first column), so that the two sides face each other back to back.

Each view carries a small asymmetric glyph burnt into the pixels (white on a black box, inside the
breast). Its template has no symmetry under flips or 90° rotations and the four templates differ,
so a screenshot of a viewer tells which view is drawn in which viewport and whether it was flipped
or rotated; :func:`marker_specs` says where each one is.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from drimbox.testdata._dataset import (
    DateLike,
    GeneratedInstance,
    GeneratedStudy,
    base_dataset,
    code_item,
    instance_path,
    new_study_context,
    powerlaw_noise,
    seeds,
    set_monochrome_pixels,
    study_result,
    uid,
    upsample,
    write_instance,
)
from drimbox.testdata.identity import Patient

__all__ = [
    "MAMMOGRAPHY_VIEWS",
    "MG_FOR_PRESENTATION",
    "MarkerSpec",
    "MammoSize",
    "marker_specs",
    "write_mammography_study",
]

MammoSize = Literal["small", "full"]

MG_FOR_PRESENTATION: Final = "1.2.840.10008.5.1.4.1.1.1.2"
"""Digital Mammography X-Ray Image Storage – For Presentation."""

MAMMOGRAPHY_VIEWS: Final = ("RCC", "LCC", "RMLO", "LMLO")
"""The four screening views, in instance order."""

BITS_STORED: Final = 12
MARKER_VALUE: Final = (1 << BITS_STORED) - 1
"""Markers are at the maximum stored value, above the window, hence pure white on screen."""
TISSUE_MAX: Final = 2900
"""Tissue never reaches the top of the window, so only markers are saturated white."""
WINDOW_CENTER: Final = 1900
WINDOW_WIDTH: Final = 2600

# (rows, columns, pixel spacing mm, marker cell px): full is a 24x29 cm detector at 70 µm
# (3328 x 2560, ~17 MB per view); small is exactly 1/8 of it.
_SIZES: Final[dict[str, tuple[int, int, float, int]]] = {
    "full": (3328, 2560, 0.07, 32),
    "small": (416, 320, 0.56, 4),
}

# 7x5 glyphs, hand-drawn so that none has a flip/rotation symmetry and their pixel counts all differ
# (so no transform of one can be mistaken for another).
_GLYPHS: Final[dict[str, tuple[str, ...]]] = {
    "RCC": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),  # F
    "LCC": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."),  # G
    "RMLO": ("..###", "...#.", "...#.", "...#.", "#..#.", "#..#.", ".##.."),  # J
    "LMLO": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),  # P
}

# Marker centre in normalised coordinates: (row fraction, distance from the chest wall as a
# fraction of the width). Chosen well inside the smallest breast outline the generator draws.
_MARKER_CENTRE: Final = {"CC": (0.50, 0.30), "MLO": (0.62, 0.30)}

_VIEW_CODES: Final = {
    "CC": ("399162004", "cranio-caudal"),
    "MLO": ("399368009", "medio-lateral oblique"),
}
# As hung: rows run nipple->chest wall (P) on right views, chest wall->nipple (A) on left views;
# columns run from the lateral/axillary side towards medial (and feet for MLO).
_ORIENTATION: Final = {"RCC": "P\\L", "LCC": "A\\R", "RMLO": "P\\FL", "LMLO": "A\\FR"}
_SERIES_DESCRIPTION: Final = {"RCC": "R CC", "LCC": "L CC", "RMLO": "R MLO", "LMLO": "L MLO"}
"""One series per view: the descriptions OHIF's ``@ohif/hpMammo`` matches (``contains 'L CC'``…)."""


@dataclass(frozen=True)
class MarkerSpec:
    """Where a view's marker is burnt in, in stored pixel coordinates.

    Attributes
    ----------
    view
        ``RCC``, ``LCC``, ``RMLO`` or ``LMLO``.
    row, col
        Top-left pixel of the glyph (the black box around it extends ``cell`` pixels further).
    size
        Glyph height in pixels (``template`` rows times ``cell``).
    template
        The glyph as a small boolean array (True = white); upscale by ``cell`` to get pixels.
    """

    view: str
    row: int
    col: int
    size: int
    template: npt.NDArray[np.bool_] = field(compare=False, repr=False)

    @property
    def cell(self) -> int:
        """Pixels per template cell."""
        return self.size // int(self.template.shape[0])

    @property
    def height(self) -> int:
        """Glyph height in pixels."""
        return self.size

    @property
    def width(self) -> int:
        """Glyph width in pixels."""
        return int(self.template.shape[1]) * self.cell

    def mask(self) -> npt.NDArray[np.bool_]:
        """The glyph at pixel scale (``height`` x ``width``), True where the pixels are white."""
        return np.kron(self.template, np.ones((self.cell, self.cell), dtype=bool))


def _template(view: str) -> npt.NDArray[np.bool_]:
    return np.array([[c == "#" for c in line] for line in _GLYPHS[view]], dtype=bool)


def marker_specs(size: MammoSize = "small") -> dict[str, MarkerSpec]:
    """Where each view's marker is for images of the given size (independent of the seed).

    Returns
    -------
    dict
        View name -> :class:`MarkerSpec`.
    """
    rows, cols, _spacing, cell = _SIZES[size]
    specs: dict[str, MarkerSpec] = {}
    for view in MAMMOGRAPHY_VIEWS:
        template = _template(view)
        height, width = template.shape[0] * cell, template.shape[1] * cell
        row_frac, depth = _MARKER_CENTRE[view[1:]]
        centre_col = cols * depth if view[0] == "L" else cols * (1 - depth)
        specs[view] = MarkerSpec(
            view=view,
            row=round(rows * row_frac - height / 2),
            col=round(centre_col - width / 2),
            size=height,
            template=template,
        )
    return specs


def _breast_image(
    rng: np.random.Generator, rows: int, cols: int, view: str, outline: tuple[float, float]
) -> npt.NDArray[np.uint16]:
    """Pixels of one view: dark background, breast outline against the chest-wall edge, texture.

    Everything smooth (outline, thickness, parenchyma) is computed on a grid of at most ~1100 rows
    and upsampled bilinearly; only the quantum noise is drawn at full resolution. That keeps a
    full-size view at a fraction of a second without any per-pixel Python.
    """
    factor = max(1, math.ceil(rows / 1100))
    grid = (math.ceil(rows / factor), math.ceil(cols / factor))
    y = (np.arange(grid[0], dtype=np.float32) / grid[0])[:, None]
    x = np.arange(grid[1], dtype=np.float32) / grid[1]
    # Normalised distance from the chest wall, which is the last column for right views.
    d = (x if view[0] == "L" else 1 - x)[None, :]
    depth_axis, height_axis = outline
    r2 = (d / depth_axis) ** 2 + ((y - 0.5) / height_axis) ** 2
    if view.endswith("MLO"):
        # MLO: above the nipple the skin line runs straight up to the axilla, already a third of
        # the width out at the top edge; below it the outline stays the rounded CC-like one.
        upper_edge = 0.33 + (depth_axis - 0.33) * np.clip(y / 0.5, 0, 1)
        r2 = np.where(y < 0.5, np.minimum(r2, (d / upper_edge) ** 2), r2)
    thickness = np.sqrt(np.clip(1 - r2, 0, 1))  # compressed thickness falls off towards the skin
    inside = r2 < 1
    # Parenchyma: a 1/f^3 field (the spectrum of real mammograms), denser towards the centre.
    texture = powerlaw_noise(rng, grid, beta=3.0)
    glandular = 1 / (1 + np.exp(-(1.6 * texture + 3.0 * thickness - 2.4)))
    tissue = np.float32(800) + np.float32(1000) * np.sqrt(thickness) + np.float32(800) * glandular
    if view.endswith("MLO"):
        # Pectoral muscle: a dense band along the chest wall, widest at the top.
        muscle = np.clip((0.25 * (1 - y / 0.45) - d) / 0.02, 0, 1)
        tissue += np.float32(450) * muscle
    smooth = np.where(inside, tissue, np.float32(60)).astype(np.float32)

    image = upsample(smooth, factor, (rows, cols))
    # Quantum noise, growing with the signal (about 8 in the background, 25 in dense tissue).
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    noise *= np.float32(0.0085) * image + np.float32(8)
    image += noise
    np.clip(image, 0, TISSUE_MAX, out=image)
    return image.astype(np.uint16)


def _burn_marker(image: npt.NDArray[np.uint16], spec: MarkerSpec) -> None:
    """Black box one cell wider than the glyph, glyph at the maximum value."""
    c = spec.cell
    image[spec.row - c : spec.row + spec.height + c, spec.col - c : spec.col + spec.width + c] = 0
    box = image[spec.row : spec.row + spec.height, spec.col : spec.col + spec.width]
    box[spec.mask()] = MARKER_VALUE


def write_mammography_study(
    dest: Path,
    patient: Patient,
    *,
    size: MammoSize = "small",
    seed: int = 0,
    study_date: DateLike = "20250114",
    transfer_syntax: str = ExplicitVRLittleEndian,
    series_per_view: bool = False,
    voi_lut_function: str | None = "LINEAR",
) -> GeneratedStudy:
    """Write a 4-view screening mammography study (MG, For Presentation) to ``dest``.

    Parameters
    ----------
    dest
        Directory (created if needed); files are named ``MG-<accession>-01-000N.dcm``.
    patient
        Whose study it is; with an INS the instances carry it in OtherPatientIDsSequence.
    size
        ``small`` (416 x 320) for tests, ``full`` (3328 x 2560, ~17 MB per view) for realism.
    seed
        Varies texture, breast outline and UIDs; same arguments give identical files.
    study_date
        ``YYYYMMDD`` or a date; a different date (a prior) gives a different study.
    transfer_syntax
        Any uncompressed syntax, or a lossless compressed one pydicom can encode (RLE Lossless,
        JPEG-LS Lossless with pyjpegls).
    series_per_view
        One series per view (numbers 1-4 in :data:`MAMMOGRAPHY_VIEWS` order, one instance each,
        SeriesDescription ``R CC``…) instead of one series of four. Pixels, markers and SOP Instance
        UIDs of the views are the same either way; series UIDs and file names differ.
    voi_lut_function
        VOI LUT Function (0028,1056), or ``None`` to leave it out (LINEAR is then implied). OHIF 3.13.2
        misreads any value present (Cornerstone's image loader keeps its first character, ``L``, an
        invalid function, and falls back to a computed window): data for the viewer leaves it out.

    Returns
    -------
    GeneratedStudy
    """
    dest.mkdir(parents=True, exist_ok=True)
    rows, cols, spacing, _cell = _SIZES[size]
    ctx = new_study_context(
        patient,
        modality="MG",
        seed=seed,
        study_date=study_date,
        study_time="091500",
        description="Mammographie de dépistage bilatérale",
    )
    single_series_uid = uid("series", ctx.study_uid, 1)
    shape_rng = np.random.default_rng(seeds("mg-shape", seed))
    # One outline per side, shared by its CC and MLO views as for a real breast.
    outline = {side: (float(shape_rng.uniform(0.62, 0.75)), float(shape_rng.uniform(0.36, 0.43))) for side in "RL"}
    specs = marker_specs(size)
    instances: list[GeneratedInstance] = []
    for number, view in enumerate(MAMMOGRAPHY_VIEWS, start=1):
        if series_per_view:
            series_uid = uid("series-per-view", ctx.study_uid, number)
            series_number, instance_number, series_description = number, 1, _SERIES_DESCRIPTION[view]
        else:
            series_uid, series_number, instance_number = single_series_uid, 1, number
            series_description = "Mammographie 2D"
        rng = np.random.default_rng(seeds("mg-pixels", seed, view))
        pixels = _breast_image(rng, rows, cols, view, outline[view[0]])
        _burn_marker(pixels, specs[view])
        time = (dt.datetime(2000, 1, 1, 9, 15) + dt.timedelta(minutes=number)).strftime("%H%M%S")
        ds = base_dataset(
            ctx,
            sop_class_uid=MG_FOR_PRESENTATION,
            # Keyed on the study's single-series UID either way, so a view keeps its SOP Instance UID.
            sop_instance_uid=uid("instance", single_series_uid, number),
            series_uid=series_uid,
            series_number=series_number,
            instance_number=instance_number,
            series_description=series_description,
            content_time=time,
        )
        _add_mammography_modules(ds, view, spacing, time, voi_lut_function)
        set_monochrome_pixels(ds, pixels, bits_stored=BITS_STORED)
        del pixels  # only one view's pixels alive at a time (ds.PixelData holds the bytes)
        path = instance_path(dest, ctx, series_number, instance_number)
        write_instance(ds, path, transfer_syntax)
        instances.append(GeneratedInstance(path, MG_FOR_PRESENTATION, ds.SOPInstanceUID, series_uid,
                                           series_number, instance_number))
    return study_result(ctx, instances)


def _add_mammography_modules(ds: Dataset, view: str, spacing: float, time: str, voi_lut_function: str | None) -> None:
    """DX Series/Anatomy/Image/Detector, Mammography Image, VOI LUT, Acquisition Context, dose."""
    laterality, position = view[0], view[1:]
    ds.BodyPartExamined = "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = time
    ds.PatientOrientation = _ORIENTATION[view].split("\\")
    ds.ImageLaterality = laterality
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.AnatomicRegionSequence = Sequence([code_item("76752008", "SCT", "Breast")])
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1  # brighter = more attenuation (less beam intensity)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.WindowCenter = WINDOW_CENTER
    ds.WindowWidth = WINDOW_WIDTH
    if voi_lut_function is not None:
        ds.VOILUTFunction = voi_lut_function
    ds.WindowCenterWidthExplanation = "STANDARD"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.ViewPosition = position
    ds.OrganExposed = "BREAST"
    view_code = code_item(*_VIEW_CODES[position][:1], "SCT", _VIEW_CODES[position][1])
    view_code.ViewModifierCodeSequence = Sequence()
    ds.ViewCodeSequence = Sequence([view_code])
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.AcquisitionContextSequence = Sequence()
    # Plausible exposure values (type 3) so dose-aware consumers have something to read.
    ds.KVP = 29 if position == "CC" else 30
    ds.ExposureTime = 1100
    ds.XRayTubeCurrent = 100
    ds.Exposure = 110
    ds.AnodeTargetMaterial = "TUNGSTEN"
    ds.FilterMaterial = ["RHODIUM"]
    ds.BodyPartThickness = 52 if position == "CC" else 56
    ds.CompressionForce = 110
    ds.DistanceSourceToDetector = 700
