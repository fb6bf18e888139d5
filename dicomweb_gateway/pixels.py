"""Frames and bulk data values of one instance (PS3.18 §10.4.1.1.4-5, §8.7.3.3.2).

Uncompressed frames are little-endian native pixel bytes (``application/octet-stream``), decoded
from the stored compression when needed; compressed frames are the stored bitstream of each frame
(``image/jls``, ``image/jp2``…). Only the requested frames of native data are read from disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import pixel_array

from dicomweb_gateway.dicomjson import element_at
from dicomweb_gateway.errors import BackendError, InvalidQuery, NotFound
from dicomweb_gateway.negotiation import FrameRepresentation
from dicomweb_gateway.syntaxes import is_native

__all__ = ["bulk_value", "parse_frame_list", "read_frames", "read_instance"]

_FRAME_LIST = re.compile(r"^\d+(,\d+)*$")


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` → ``[1, 3, 5]`` (1-based frame numbers, PS3.18 §8.3.1.4)."""
    if not _FRAME_LIST.match(text):
        raise InvalidQuery(f"frame list {text[:40]!r} is not comma-separated positive integers")
    frames = [int(v) for v in text.split(",")]
    if 0 in frames:
        raise InvalidQuery("frame numbers start at 1")
    return frames


def read_instance(path: Path, *, stop_before_pixels: bool = False, defer_size: int | None = None) -> Dataset:
    """Read a stored instance; an unreadable file is the backend's fault (502)."""
    try:
        return dcmread(path, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise BackendError(f"stored instance {path.name} is unreadable: {exc}") from exc


def _frame_count(ds: Dataset) -> int:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NotFound("this instance has no pixel data")
    return int(ds.get("NumberOfFrames", 1) or 1)


def read_frames(path: Path, numbers: Sequence[int], rep: FrameRepresentation) -> list[bytes]:
    """The bytes of frames ``numbers`` (1-based) of the instance at ``path``.

    Raises
    ------
    NotFound
        No pixel data, or a frame number beyond Number of Frames.
    """
    ds = read_instance(path)
    count = _frame_count(ds)
    missing = [n for n in numbers if n > count]
    if missing:
        raise NotFound(f"frame {missing[0]} requested; the instance has {count} frame(s)")
    stored = str(ds.file_meta.TransferSyntaxUID)
    if not rep.native:
        return [get_frame(ds.PixelData, n - 1, number_of_frames=count) for n in numbers]
    if is_native(stored):
        return [_native_frame(ds, n - 1, count) for n in numbers]
    return [pixel_array(ds, index=n - 1, as_rgb=False).astype(_little(ds)).tobytes() for n in numbers]


def _little(ds: Dataset) -> str:
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    return f"<{'i' if signed else 'u'}{max(1, bits // 8)}"


def _native_frame(ds: Dataset, index: int, count: int) -> bytes:
    """Slice one frame out of native Pixel Data without decoding it."""
    data: bytes = ds.PixelData
    bits = int(ds.BitsAllocated)
    if bits == 1:
        # Bit-packed frames need not start on a byte boundary: unpack through pydicom.
        return bytes(pixel_array(ds, index=index).astype("u1").tobytes())
    frame_len = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    if len(data) < frame_len * count:
        raise BackendError("stored pixel data is shorter than its frames")
    return data[index * frame_len : (index + 1) * frame_len]


def bulk_value(path: Path, bulk_path: str) -> bytes:
    """The value a ``BulkDataURI`` names, as ``application/octet-stream`` (PS3.18 §8.7.3.3.2).

    Pixel Data of a compressed instance is returned decoded (native little endian): an
    octet-stream is uncompressed by definition.
    """
    ds = read_instance(path)
    elem = element_at(ds, bulk_path)
    if elem.tag == 0x7FE00010 and elem.is_undefined_length:
        ds.decompress(generate_instance_uid=False)
        elem = ds["PixelData"]
    value = elem.value
    if not isinstance(value, bytes | bytearray):
        raise NotFound(f"{bulk_path} is not a binary value")
    return bytes(value)
