"""Rendered images and thumbnails (PS3.18 §8.3.5.1, §10.4.1.1.3, §10.4.1.1.6).

Grayscale pipeline (PS3.3 C.11, PS3.4 N.2): stored values → Modality LUT / Rescale (pydicom
``apply_modality_lut``) → VOI LUT or window (``apply_voi_lut``, or the request's ``window``) →
scaled linearly from the VOI output range to 0-255 → inverted for MONOCHROME1 or an INVERSE
Presentation LUT Shape. A 16-bit mammogram is thus displayed as its VOI LUT/window says, not
min-max stretched. Colour images are sent as RGB, scaled to 8 bits when stored deeper.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut, apply_windowing
from pydicom.pixels.utils import pixel_array

from dicomweb_gateway.errors import InvalidQuery, NotFound

__all__ = ["RenderOptions", "parse_render_options", "render_frame"]

_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class RenderOptions:
    """Rendering parameters of a request (PS3.18 §8.3.5.1).

    Attributes
    ----------
    media_type
        ``image/jpeg`` or ``image/png``.
    quality
        JPEG quality, 1-100.
    window
        ``(center, width, VOI LUT Function)`` overriding the instance's VOI.
    viewport
        ``(vw, vh)`` the output must fit in, keeping the aspect ratio; with ``region``
        ``(sx, sy, sw, sh)`` the source rectangle to render.
    """

    media_type: str = "image/jpeg"
    quality: int = 90
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    region: tuple[int, int, int, int] | None = None


def parse_render_options(
    params: dict[str, str], *, media_type: str, default_quality: int, default_viewport: tuple[int, int] | None = None
) -> RenderOptions:
    """Validate ``quality``, ``window`` and ``viewport`` query parameters (400 when malformed)."""
    quality = default_quality
    if "quality" in params:
        raw = params["quality"]
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise InvalidQuery(f"quality must be an integer from 1 to 100, not {raw!r}")
        quality = int(raw)
    window = None
    if "window" in params:
        parts = [p.strip() for p in params["window"].split(",")]
        if len(parts) != 3 or not all(_NUMBER.match(p) for p in parts[:2]) or parts[2].lower() not in _FUNCTIONS:
            raise InvalidQuery("window must be center,width,function with function linear, linear-exact or sigmoid")
        if float(parts[1]) <= 0:
            raise InvalidQuery("window width must be positive")
        window = (float(parts[0]), float(parts[1]), _FUNCTIONS[parts[2].lower()])
    viewport, region = default_viewport, None
    if "viewport" in params:
        parts = [p.strip() for p in params["viewport"].split(",")]
        if len(parts) not in (2, 6) or not all(re.fullmatch(r"-?\d+", p) for p in parts if p):
            raise InvalidQuery("viewport must be vw,vh or vw,vh,sx,sy,sw,sh (integers)")
        if not parts[0] or not parts[1] or int(parts[0]) <= 0 or int(parts[1]) <= 0:
            raise InvalidQuery("viewport width and height must be positive integers")
        viewport = (int(parts[0]), int(parts[1]))
        if len(parts) == 6:
            sx, sy, sw, sh = (int(p) if p else 0 for p in parts[2:])
            if sw <= 0 or sh <= 0 or sx < 0 or sy < 0:
                raise InvalidQuery("viewport region must have a non-negative origin and a positive size")
            region = (sx, sy, sw, sh)
    return RenderOptions(media_type=media_type, quality=quality, window=window, viewport=viewport, region=region)


def render_frame(ds: Dataset, frame: int, options: RenderOptions) -> bytes:
    """Render frame ``frame`` (1-based) of ``ds`` to JPEG or PNG bytes.

    Raises
    ------
    NotFound
        No pixel data or no such frame.
    """
    if "PixelData" not in ds:
        raise NotFound("this instance has no pixel data to render")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= count:
        raise NotFound(f"frame {frame} requested; the instance has {count} frame(s)")
    arr = pixel_array(ds, index=frame - 1 if count > 1 else None)
    if int(ds.get("SamplesPerPixel", 1)) == 1:
        image = Image.fromarray(_grayscale_8bit(arr, ds, options.window), mode="L")
    else:
        image = Image.fromarray(_colour_8bit(arr, ds), mode="RGB")
    image = _fit(image, options)
    out = io.BytesIO()
    if options.media_type == "image/png":
        image.save(out, format="PNG", compress_level=1)  # speed over size: rendered on every view
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()


def _grayscale_8bit(
    arr: npt.NDArray[np.generic], ds: Dataset, window: tuple[float, float, str] | None
) -> npt.NDArray[np.uint8]:
    values = apply_modality_lut(arr, ds)
    if window is not None:
        voi = _window_dataset(ds, window)
        out = apply_windowing(values.astype(np.float64), voi)
        low, high = _window_range(voi)
    elif "VOILUTSequence" in ds or "WindowCenter" in ds:
        out = apply_voi_lut(values, ds, index=0)
        low, high = _voi_range(ds)
    else:
        # No VOI in the instance: stretch the actual value range (PS3.4 N.2.1.1 leaves it open).
        out = values.astype(np.float64)
        low, high = float(out.min()), float(out.max())
    scaled = (np.asarray(out, dtype=np.float64) - low) * (255.0 / max(high - low, 1e-9))
    result = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    inverse = ds.get("PhotometricInterpretation") == "MONOCHROME1"
    if ds.get("PresentationLUTShape") == "INVERSE":
        inverse = not inverse
    return (255 - result) if inverse else result


def _window_dataset(ds: Dataset, window: tuple[float, float, str]) -> Dataset:
    """A copy of the attributes ``apply_windowing`` reads, with the request's window."""
    voi = Dataset()
    for keyword in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                    "RescaleIntercept", "ModalityLUTSequence"):  # fmt: skip
        if keyword in ds:
            setattr(voi, keyword, ds[keyword].value)
    voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = window
    return voi


def _window_range(voi: Dataset) -> tuple[float, float]:
    """The output range ``apply_windowing`` maps onto, found by windowing two extreme values."""
    probe = apply_windowing(np.array([-1e12, 1e12], dtype=np.float64), voi)
    return float(probe[0]), float(probe[1])


def _voi_range(ds: Dataset) -> tuple[float, float]:
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    voi = _window_dataset(ds, (float(_first(ds.WindowCenter)), float(_first(ds.WindowWidth)),
                               str(ds.get("VOILUTFunction", "LINEAR"))))  # fmt: skip
    return _window_range(voi)


def _first(value: object) -> str:
    """The first of possibly several windows (the instance's default, PS3.3 C.11.2.1.2)."""
    return str(value[0] if isinstance(value, MultiValue | list | tuple) else value)


def _colour_8bit(arr: npt.NDArray[np.generic], ds: Dataset) -> npt.NDArray[np.uint8]:
    # pixel_array has already converted YBR to RGB (as_rgb defaults to True).
    bits = int(ds.get("BitsStored", 8))
    if bits > 8:
        arr = np.right_shift(arr.astype(np.uint32), bits - 8)
    return np.asarray(arr, dtype=np.uint8)


def _fit(image: Image.Image, options: RenderOptions) -> Image.Image:
    if options.region is not None:
        sx, sy, sw, sh = options.region
        image = image.crop((sx, sy, sx + sw, sy + sh))
    if options.viewport is not None:
        vw, vh = options.viewport
        scale = min(vw / image.width, vh / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return image
