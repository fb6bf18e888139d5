"""Cross-sectional studies: a multi-series chest CT and a single-series brain MR.

The content is a simple analytic phantom (body outline, fat, lungs, spine, liver for CT; scalp,
skull, brain, ventricles for MR) that changes along the slices, so slice order and geometry
mistakes show. Geometry is consistent: axial slices (ImageOrientationPatient ``1\\0\\0\\0\\1\\0``),
ImagePositionPatient stepping by the slice spacing along -z (head first, towards the feet), one
FrameOfReferenceUID per study shared by every series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from drimbox.testdata._dataset import (
    DateLike,
    GeneratedInstance,
    GeneratedStudy,
    StudyContext,
    base_dataset,
    instance_path,
    new_study_context,
    powerlaw_noise,
    seeds,
    set_monochrome_pixels,
    study_result,
    uid,
    write_instance,
)
from drimbox.testdata.identity import Patient

__all__ = ["CT_IMAGE_STORAGE", "MR_IMAGE_STORAGE", "write_ct_study", "write_mr_study"]

CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.4"

CT_RESCALE_INTERCEPT: Final = -1024
CT_PADDING: Final = -2000
"""Stored value outside the reconstruction circle (a common vendor choice, below any real HU)."""


@dataclass(frozen=True)
class _CtSeries:
    description: str
    kernel: str
    window: tuple[int, int]  # centre, width (HU)


# Two reconstructions of the same acquisition, as a chest CT usually ships.
_CT_SERIES: Final = (
    _CtSeries("Thorax-abdomen C+ tissus mous", "B30f", (40, 400)),
    _CtSeries("Thorax C+ parenchyme pulmonaire", "B70f", (-600, 1500)),
)


def _grid(rows: int, cols: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Pixel coordinates normalised to [-1, 1] across the field of view (y down, x right)."""
    y = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    return y, x


def _inside(
    y: npt.NDArray[np.float32], x: npt.NDArray[np.float32], cy: float, cx: float, ry: float, rx: float
) -> npt.NDArray[np.bool_]:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1


def _ct_slice(rng: np.random.Generator, rows: int, cols: int, level: float) -> npt.NDArray[np.int16]:
    """Stored values of one axial slice; ``level`` runs 0 (lung apex) to 1 (upper abdomen)."""
    y, x = _grid(rows, cols)
    hu = np.full((rows, cols), -1000, dtype=np.float32)  # air
    body = _inside(y, x, 0.05, 0, 0.55, 0.80)
    hu[body] = -100  # subcutaneous fat
    hu[_inside(y, x, 0.05, 0, 0.48, 0.72)] = 40  # soft tissue
    lungs = max(0.0, 1 - 1.4 * level)  # the lungs shrink towards the abdomen
    if lungs > 0:
        for side in (-1, 1):
            hu[_inside(y, x, -0.02, side * 0.34, 0.36 * lungs, 0.26 * lungs)] = -850
    if level > 0.45:
        # Liver on the patient's right, i.e. the left of the image.
        hu[_inside(y, x, 0.0, -0.30, 0.30 * (level - 0.3), 0.35)] = 60
    hu[_inside(y, x, 0.38, 0, 0.11, 0.09)] = 1100  # vertebral body (cortex)
    hu[_inside(y, x, 0.38, 0, 0.08, 0.065)] = 300  # cancellous bone
    hu[_inside(y, x, 0.12, 0.06, 0.09, 0.09)] = 180  # contrast-filled aorta
    texture = powerlaw_noise(rng, (rows, cols), beta=2.5)
    hu += np.where(body, np.float32(6) * texture, np.float32(0)) + rng.normal(0, 12, (rows, cols)).astype(np.float32)
    stored = np.clip(hu - CT_RESCALE_INTERCEPT, -1024, 3071)
    stored[(y**2 + x**2) > 1] = CT_PADDING  # outside the reconstruction circle
    return stored.astype(np.int16)


def write_ct_study(
    dest: Path,
    patient: Patient,
    *,
    series: int = 2,
    slices_per_series: int = 20,
    rows: int = 512,
    cols: int = 512,
    seed: int = 0,
    study_date: DateLike = "20250114",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> GeneratedStudy:
    """Write a chest CT study (CT Image Storage, 16-bit signed, HU via rescale) to ``dest``.

    Parameters
    ----------
    dest
        Directory (created if needed).
    patient
        Whose study it is.
    series
        Number of reconstructions (soft-tissue and lung kernels alternate), each covering the same
        slices.
    slices_per_series, rows, cols
        Size of each series; the field of view stays 350 mm whatever the matrix.
    seed
        Varies noise and UIDs; same arguments give identical files.
    study_date
        ``YYYYMMDD`` or a date.
    transfer_syntax
        Any uncompressed syntax or a lossless one pydicom can encode.
    """
    dest.mkdir(parents=True, exist_ok=True)
    ctx = new_study_context(
        patient,
        modality="CT",
        seed=seed,
        study_date=study_date,
        study_time="141000",
        description="TDM thoraco-abdominal",
    )
    spacing = 350.0 / cols
    thickness = 2.5
    instances: list[GeneratedInstance] = []
    for series_number in range(1, series + 1):
        recon = _CT_SERIES[(series_number - 1) % len(_CT_SERIES)]
        series_uid = uid("series", ctx.study_uid, series_number)
        for index in range(slices_per_series):
            number = index + 1
            rng = np.random.default_rng(seeds("ct", seed, series_number, index))
            level = index / max(1, slices_per_series - 1)
            z = -thickness * index
            ds = base_dataset(
                ctx,
                sop_class_uid=CT_IMAGE_STORAGE,
                sop_instance_uid=uid("instance", series_uid, number),
                series_uid=series_uid,
                series_number=series_number,
                instance_number=number,
                series_description=recon.description,
                content_time="141200",
            )
            _add_plane(ds, ctx, rows=rows, cols=cols, spacing=spacing, thickness=thickness, z=z)
            ds.BodyPartExamined = "CHEST"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.AcquisitionNumber = 1
            ds.AcquisitionDate = ctx.study_date
            ds.AcquisitionTime = "141100"
            ds.KVP = 120
            ds.DataCollectionDiameter = 500
            ds.ReconstructionDiameter = 350
            ds.GantryDetectorTilt = 0
            ds.TableHeight = 160
            ds.RotationDirection = "CW"
            ds.XRayTubeCurrent = 180
            ds.ExposureTime = 500
            ds.ConvolutionKernel = recon.kernel
            ds.RescaleIntercept = CT_RESCALE_INTERCEPT
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.WindowCenter, ds.WindowWidth = recon.window
            set_monochrome_pixels(ds, _ct_slice(rng, rows, cols, level), bits_stored=16)
            ds.PixelPaddingValue = CT_PADDING
            path = instance_path(dest, ctx, series_number, number)
            write_instance(ds, path, transfer_syntax)
            instances.append(
                GeneratedInstance(path, CT_IMAGE_STORAGE, ds.SOPInstanceUID, series_uid, series_number, number)
            )
    return study_result(ctx, instances)


def _add_plane(
    ds: Dataset, ctx: StudyContext, *, rows: int, cols: int, spacing: float, thickness: float, z: float
) -> None:
    """Frame of Reference and Image Plane modules for an axial slice centred on the table axis."""
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.PixelSpacing = [round(spacing, 6), round(spacing, 6)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    # Position is the centre of the first (top-left) pixel.
    ds.ImagePositionPatient = [
        round(-spacing * (cols - 1) / 2, 4),
        round(-spacing * (rows - 1) / 2, 4),
        round(z, 4),
    ]
    ds.SliceThickness = thickness
    ds.SliceLocation = round(z, 4)


def _mr_slice(rng: np.random.Generator, rows: int, cols: int, level: float) -> npt.NDArray[np.uint16]:
    """One axial T2-weighted slice; ``level`` runs 0 (vertex) to 1 (skull base)."""
    y, x = _grid(rows, cols)
    scale = float(np.sqrt(max(0.05, 1 - (1.6 * (level - 0.55)) ** 2)))  # head narrower at both ends
    signal = np.zeros((rows, cols), dtype=np.float32)
    signal[_inside(y, x, 0, 0, 0.85 * scale, 0.70 * scale)] = 900  # scalp fat
    signal[_inside(y, x, 0, 0, 0.80 * scale, 0.65 * scale)] = 60  # skull
    signal[_inside(y, x, 0, 0, 0.74 * scale, 0.59 * scale)] = 1800  # CSF
    brain = _inside(y, x, 0, 0, 0.71 * scale, 0.56 * scale)
    signal[brain] = 1100  # grey matter
    signal[_inside(y, x, 0, 0, 0.55 * scale, 0.42 * scale)] = 750  # white matter
    if 0.3 < level < 0.7:
        for side in (-1, 1):
            signal[_inside(y, x, -0.05, side * 0.09, 0.22, 0.06)] = 2000  # lateral ventricles
    texture = powerlaw_noise(rng, (rows, cols), beta=2.0)
    signal += np.where(brain, np.float32(40) * texture, np.float32(0))
    signal += np.abs(rng.normal(0, 15, (rows, cols))).astype(np.float32)  # Rician-like floor
    return np.clip(signal, 0, 4095).astype(np.uint16)


def write_mr_study(
    dest: Path,
    patient: Patient,
    *,
    slices: int = 16,
    rows: int = 256,
    cols: int = 256,
    seed: int = 0,
    study_date: DateLike = "20250114",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> GeneratedStudy:
    """Write a one-series axial T2 brain MR study (MR Image Storage, 16-bit unsigned) to ``dest``.

    Parameters are as for :func:`write_ct_study`; the field of view is 240 mm, slices 5 mm thick
    every 6 mm.
    """
    dest.mkdir(parents=True, exist_ok=True)
    ctx = new_study_context(
        patient, modality="MR", seed=seed, study_date=study_date, study_time="163000", description="IRM cérébrale"
    )
    series_uid = uid("series", ctx.study_uid, 1)
    spacing = 240.0 / cols
    instances: list[GeneratedInstance] = []
    for index in range(slices):
        number = index + 1
        rng = np.random.default_rng(seeds("mr", seed, index))
        ds = base_dataset(
            ctx,
            sop_class_uid=MR_IMAGE_STORAGE,
            sop_instance_uid=uid("instance", series_uid, number),
            series_uid=series_uid,
            series_number=1,
            instance_number=number,
            series_description="AX T2 TSE",
            content_time="163500",
        )
        z = 60.0 - 6.0 * index
        _add_plane(ds, ctx, rows=rows, cols=cols, spacing=spacing, thickness=5.0, z=z)
        ds.BodyPartExamined = "HEAD"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.AcquisitionNumber = 1
        ds.AcquisitionDate = ctx.study_date
        ds.AcquisitionTime = "163200"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = ["SK", "SP"]
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = "*tse2d1_16"
        ds.AngioFlag = "N"
        ds.RepetitionTime = 4000
        ds.EchoTime = 100
        ds.EchoTrainLength = 16
        ds.NumberOfAverages = 1
        ds.ImagingFrequency = 63.68
        ds.ImagedNucleus = "1H"
        ds.EchoNumbers = 1
        ds.MagneticFieldStrength = 1.5
        ds.SpacingBetweenSlices = 6.0
        ds.FlipAngle = 150
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.AcquisitionMatrix = [0, cols, rows, 0]
        ds.WindowCenter, ds.WindowWidth = 1000, 2000
        set_monochrome_pixels(ds, _mr_slice(rng, rows, cols, index / max(1, slices - 1)), bits_stored=12)
        path = instance_path(dest, ctx, 1, number)
        write_instance(ds, path, transfer_syntax)
        instances.append(GeneratedInstance(path, MR_IMAGE_STORAGE, ds.SOPInstanceUID, series_uid, 1, number))
    return study_result(ctx, instances)
