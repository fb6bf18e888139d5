"""One very large instance, written frame by frame so memory stays bounded whatever the size.

The header is written by pydicom (so the File Meta and every attribute are right); the Pixel Data
element is then appended by hand: its explicit-length OW header followed by one frame at a time.
Pixel Data is the last top-level element, so nothing has to be written after it. A memory-bound
test can therefore create a 500 MB–4 GB file while holding only a couple of frames in memory.

The IOD is Multi-frame Grayscale Word Secondary Capture, the simplest multi-frame storage class
that every PACS accepts; its shape (many large 16-bit frames) is what breast tomosynthesis or a
long cine puts on the wire.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Final

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from drimbox.testdata._dataset import DateLike, base_dataset, new_study_context, seeds, uid, write_instance
from drimbox.testdata.identity import Patient

__all__ = ["MULTIFRAME_WORD_SC", "write_large_instance"]

MULTIFRAME_WORD_SC: Final = "1.2.840.10008.5.1.4.1.1.7.3"
"""Multi-frame Grayscale Word Secondary Capture Image Storage."""

_MAX_ELEMENT_BYTES: Final = 0xFFFFFFFE  # 0xFFFFFFFF means "undefined length"; lengths are even


def write_large_instance(
    dest: Path,
    patient: Patient,
    *,
    target_bytes: int,
    frame_shape: tuple[int, int] = (1024, 1024),
    seed: int = 0,
    study_date: DateLike = "20250114",
) -> Path:
    """Write one multi-frame instance of at least ``target_bytes`` bytes to ``dest``.

    Parameters
    ----------
    dest
        Directory (created if needed); the file is named ``SC-<accession>-01-0001.dcm``.
    patient
        Whose instance it is.
    target_bytes
        Minimum file size; the pixel data is rounded up to whole frames. At most ~4 GiB, the
        largest explicit-length element.
    frame_shape
        Rows and columns of each 16-bit frame (2 MiB per frame by default).
    seed, study_date
        Vary the UIDs (and the frame pattern); same arguments give the same file.

    Returns
    -------
    Path
        The file written (Explicit VR Little Endian).
    """
    rows, cols = frame_shape
    frame_bytes = rows * cols * 2
    frames = max(1, math.ceil(target_bytes / frame_bytes))
    if frames * frame_bytes > _MAX_ELEMENT_BYTES:
        raise ValueError(f"{target_bytes} bytes of pixel data do not fit in one explicit-length element")
    dest.mkdir(parents=True, exist_ok=True)
    ctx = new_study_context(
        patient, modality="OT", seed=seed, study_date=study_date, study_time="120000", description="Volumineux"
    )
    series_uid = uid("series", ctx.study_uid, 1)
    ds = base_dataset(
        ctx,
        sop_class_uid=MULTIFRAME_WORD_SC,
        sop_instance_uid=uid("instance", series_uid, 1),
        series_uid=series_uid,
        series_number=1,
        instance_number=1,
        series_description=f"{frames} frames {rows}x{cols}",
        content_time="120000",
    )
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    # An unpaired body part, so that no Laterality is expected; no orientation for a capture.
    ds.BodyPartExamined = "CHEST"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PresentationLUTShape = "IDENTITY"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.NumberOfFrames = frames
    # Frame Increment Pointer -> Page Number Vector: frames are numbered, nothing more is implied.
    ds.FrameIncrementPointer = 0x00182001
    ds.PageNumberVector = list(range(1, frames + 1))

    path = dest / f"SC-{ctx.accession}-01-0001.dcm"
    write_instance(ds, path, ExplicitVRLittleEndian)  # header only: no Pixel Data yet
    _append_pixel_data(path, frames, rows, cols, seed)
    return path


def _append_pixel_data(path: Path, frames: int, rows: int, cols: int, seed: int) -> None:
    """Append Pixel Data (7FE0,0010) OW with an explicit length, one frame at a time."""
    rng = np.random.default_rng(seeds("large", seed))
    # One base pattern (diagonal gradient + noise) shifted per frame: distinct frames for the
    # price of one addition each, and frame k is checkable from k alone.
    gradient = (np.add.outer(np.arange(rows), np.arange(cols)) * 2048 // max(1, rows + cols)).astype(np.uint16)
    base = gradient + rng.integers(0, 64, size=(rows, cols), dtype=np.uint16)
    length = frames * rows * cols * 2
    with path.open("ab") as out:
        # Explicit VR little endian: tag group, element, VR, 2 reserved bytes, 32-bit length.
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        for k in range(frames):
            frame = (base + np.uint16((k * 16) % 2048)) & np.uint16(0x0FFF)
            out.write(frame.astype("<u2", copy=False).tobytes())
