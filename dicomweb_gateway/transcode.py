"""One instance's body in the negotiated transfer syntax (PS3.18 §8.7.3.5).

When the chosen syntax is the stored one, the file is streamed as is: nothing is read into
memory. Otherwise the one instance is read, decoded if compressed, and re-encoded (native, or a
lossless compressed syntax): at most one instance is in memory at a time because the WADO stream
asks for the next body only when the previous one has been sent.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from dicomweb_gateway.backend import InstanceFile
from dicomweb_gateway.errors import BackendError
from dicomweb_gateway.negotiation import DicomRepresentation
from dicomweb_gateway.syntaxes import NATIVE_SYNTAXES, deliverable_syntaxes, is_native

__all__ = ["EncodedInstance", "available_media_types", "encode_instance", "plan_syntax"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedInstance:
    """The body to send for one instance.

    Attributes
    ----------
    transfer_syntax
        The syntax of ``body``.
    body
        The stored file itself (streamed in chunks), or the transcoded Part 10 bytes.
    """

    transfer_syntax: str
    body: Path | bytes


def plan_syntax(instance: InstanceFile, rep: DicomRepresentation, *, encode: bool) -> str | None:
    """The syntax ``instance`` will most likely be sent in, without reading the file.

    Assumes the instance has pixel data (the case with most options); :func:`encode_instance`
    narrows the choice once the file is read, which can only fall back, never widen.
    """
    stored = instance.transfer_syntax
    return rep.select(stored, deliverable_syntaxes(stored, has_pixels=True, encode=encode))


def encode_instance(instance: InstanceFile, rep: DicomRepresentation, *, encode: bool) -> EncodedInstance | None:
    """Produce ``instance`` in the best acceptable syntax, or ``None`` if none can be delivered.

    Parameters
    ----------
    instance
        The stored file.
    rep
        The client's acceptable representations.
    encode
        Whether lossless compression on the fly is allowed.
    """
    stored = instance.transfer_syntax
    first = plan_syntax(instance, rep, encode=encode)
    if first is None:
        return None
    if first == stored:
        return EncodedInstance(stored, instance.path)
    try:
        ds = dcmread(instance.path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise BackendError(f"instance {instance.sop_instance_uid} is unreadable: {exc}") from exc
    has_pixels = "PixelData" in ds
    options = list(deliverable_syntaxes(stored, has_pixels=has_pixels, encode=encode))
    while (target := rep.select(stored, options)) is not None:
        if target == stored:
            return EncodedInstance(stored, instance.path)
        try:
            return EncodedInstance(target, _transcode(ds, stored, target, has_pixels))
        except Exception as exc:  # noqa: BLE001 - any codec failure means: try the next syntax
            _log.info("cannot transcode %s from %s to %s: %s", instance.sop_instance_uid, stored, target, exc)
            options.remove(target)
    return None


def _transcode(ds: Dataset, stored: str, target: str, has_pixels: bool) -> bytes:
    if has_pixels and not is_native(stored):
        # Decoding changes PixelData and, for YBR JPEG, Photometric Interpretation; pydicom sets
        # the transfer syntax to Explicit VR Little Endian.
        ds.decompress(generate_instance_uid=False)
    if target in NATIVE_SYNTAXES:
        ds.file_meta.TransferSyntaxUID = UID(target)
    else:
        ds.compress(UID(target), generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def available_media_types(syntaxes: Iterable[str]) -> list[str]:
    """``multipart/related`` media types for each of ``syntaxes`` (the body of a 406)."""
    return [f'multipart/related; type="application/dicom"; transfer-syntax={ts}' for ts in syntaxes]
