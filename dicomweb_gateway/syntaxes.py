"""What this gateway can do with each Transfer Syntax: deliver as stored, decode, encode.

Decisions (PS3.18 §8.7.3.5, DESIGN F7), in one place:

* Native syntaxes (Implicit/Explicit VR Little Endian, Deflated Explicit VR Little Endian) can be
  produced from any data set whose pixel data, if compressed, pydicom can decode — with the
  plugins this package depends on: pylibjpeg-openjpeg (JPEG 2000, HTJ2K), pyjpegls (JPEG-LS),
  python-gdcm (JPEG baseline/extended/lossless), pylibjpeg-rle (RLE). Big Endian is retired and
  not produced.
* Only **lossless** compressed syntaxes are ever encoded: RLE Lossless (pydicom's own encoder),
  JPEG-LS Lossless (pyjpegls) and JPEG 2000 Lossless (pylibjpeg-openjpeg). JPEG Lossless
  (``.4.70``/``.4.57``) has no encoder on PyPI that pydicom drives (libjpeg's Python wrapper is
  decode-only and GPL), so it is delivered only when stored so. Lossy syntaxes (JPEG baseline,
  JPEG 2000 irreversible, JPEG-LS near-lossless, MPEG/HEVC video) are never produced by
  transcoding, only passed through when stored so.
* Data stored in a lossy (or possibly lossy, like JPEG 2000 ``.4.91``) syntax may be decompressed
  to a native syntax (PS3.18 always allows Explicit VR Little Endian) but is never re-encoded into
  another compressed syntax: that would cost bytes and, for YBR colour, add rounding.
* Encoding is optional (``GatewaySettings.encode_compressed``): it trades CPU (JPEG-LS ~70 MB/s
  per core on 16-bit mammography) for 2-3x fewer bytes on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

__all__ = [
    "DEFAULT_TRANSFER_SYNTAX",
    "LOSSLESS_ENCODABLE",
    "LOSSLESS_STORED",
    "NATIVE_SYNTAXES",
    "can_decode",
    "can_encode",
    "deliverable_syntaxes",
    "frame_media_type",
    "is_native",
]

DEFAULT_TRANSFER_SYNTAX: Final = UID(ExplicitVRLittleEndian)
"""PS3.18 Table 8.7.3-2: the default for ``application/dicom`` when no ``transfer-syntax`` is asked."""

NATIVE_SYNTAXES: Final = frozenset(
    {UID(ExplicitVRLittleEndian), UID(ImplicitVRLittleEndian), UID(DeflatedExplicitVRLittleEndian)}
)
"""Uncompressed pixel data syntaxes this gateway can write."""

LOSSLESS_ENCODABLE: Final = (UID(JPEGLSLossless), UID(JPEG2000Lossless), UID(RLELossless))
"""Lossless compressed syntaxes pydicom may encode, if the encoder plugin is installed."""

LOSSLESS_STORED: Final = frozenset(
    {UID(JPEGLossless), UID(JPEGLosslessSV1), UID(JPEGLSLossless), UID(JPEG2000Lossless), UID(RLELossless),
     UID(HTJ2KLossless), UID(HTJ2KLosslessRPCL)}
)  # fmt: skip
"""Compressed syntaxes that are lossless by definition (re-encodable without loss)."""

_FRAME_MEDIA_TYPES: Final[dict[str, str]] = {
    JPEGBaseline8Bit: "image/jpeg",
    JPEGExtended12Bit: "image/jpeg",
    JPEGLossless: "image/jpeg",
    JPEGLosslessSV1: "image/jpeg",
    JPEGLSLossless: "image/jls",
    JPEGLSNearLossless: "image/jls",
    JPEG2000Lossless: "image/jp2",
    JPEG2000: "image/jp2",
    RLELossless: "image/dicom-rle",
}


def is_native(ts: str) -> bool:
    """Whether ``ts`` stores pixel data uncompressed (Big Endian included)."""
    return ts in NATIVE_SYNTAXES or ts == ExplicitVRBigEndian


def can_decode(ts: str) -> bool:
    """Whether pixel data in ``ts`` can be decoded here (always true for native syntaxes)."""
    if is_native(ts):
        return True
    try:
        return bool(get_decoder(UID(ts)).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_encode(ts: str) -> bool:
    """Whether pixel data can be *losslessly* encoded into ``ts`` here (native syntaxes included)."""
    if ts in NATIVE_SYNTAXES:
        return True
    if ts not in LOSSLESS_ENCODABLE:
        return False
    try:
        return bool(get_encoder(UID(ts)).is_available)
    except (NotImplementedError, ValueError):
        return False


def deliverable_syntaxes(stored: str, *, has_pixels: bool, encode: bool) -> list[str]:
    """Every transfer syntax an instance stored in ``stored`` can be delivered in without loss.

    Parameters
    ----------
    stored
        The stored Transfer Syntax UID.
    has_pixels
        Whether the instance has Pixel Data; without it, compressed syntaxes are meaningless and
        only native ones (and the stored one) are offered.
    encode
        Whether on-the-fly lossless encoding is enabled.

    Returns
    -------
    list of str
        The stored syntax first, then native, then encodable lossless syntaxes.
    """
    out = [stored]
    if not has_pixels or can_decode(stored):
        out += sorted(NATIVE_SYNTAXES - {stored})
        if has_pixels and encode and (is_native(stored) or stored in LOSSLESS_STORED):
            out += [ts for ts in LOSSLESS_ENCODABLE if ts != stored and can_encode(ts)]
    return _unique(out)


def frame_media_type(ts: str) -> str | None:
    """PS3.18 Table 8.7.3-4 media type of one compressed frame in ``ts`` (``None``: native/unknown)."""
    return _FRAME_MEDIA_TYPES.get(ts)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
