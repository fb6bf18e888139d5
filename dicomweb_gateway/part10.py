"""Structural check of a DICOM Part 10 file's element lengths, for files that come from outside.

pydicom is lenient on purpose: a value shorter than its declared length is read as it is, and an
element after the pixel data is never seen by ``stop_before_pixels``. A file claiming a 4 GiB element
in a few hundred bytes, or cut in the middle of a value, would therefore be accepted, stored and
served — and fail later in a viewer or a PACS. :func:`length_problem` walks the top-level data
elements (values skipped, not read) and names the first whose declared length runs past the end of
the file; sequence nesting too deep to walk is also a problem. Callers refuse such files.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from pydicom import Dataset
from pydicom.dataelem import RawDataElement
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import data_element_generator
from pydicom.uid import UID

__all__ = ["READ_ERRORS", "length_problem"]

READ_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError, BytesLengthException, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError,
    IndexError, NotImplementedError, RecursionError, struct.error,
)
"""What pydicom raises on hostile bytes (found by tests/security/test_fuzz.py): an unknown VR is a
NotImplementedError, a value of the wrong length a BytesLengthException (or a bare struct.error), deep
nesting a RecursionError.
Readers of outside files catch exactly these and refuse the file."""

_UNDEFINED = 0xFFFFFFFF
_META_START = 132 + 12  # preamble + "DICM", then (0002,0000) UL (explicit VR: 8-byte header + 4-byte value)


def length_problem(fp: BinaryIO, size: int, ds: Dataset) -> str | None:
    """The first element of ``fp`` (a Part 10 file of ``size`` bytes, ``ds`` its header as read by
    pydicom) whose value would end past the end of the file, or ``None`` when every length fits.

    Files without a preamble or a File Meta group length, and deflated ones, are not walked (their
    start or their bytes are not where the lengths point).
    """
    meta = getattr(ds, "file_meta", None)
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if group_length is None or syntax is None:
        return None
    syntax = UID(str(syntax))
    if not syntax.is_transfer_syntax:
        return f"{syntax} is not a transfer syntax"
    if syntax.is_deflated:
        return None
    fp.seek(128)
    if fp.read(4) != b"DICM":
        return None
    try:
        fp.seek(_META_START + int(group_length))
        for raw in data_element_generator(fp, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=0):
            if not isinstance(raw, RawDataElement):
                continue
            if raw.length != _UNDEFINED and raw.value_tell + raw.length > size:
                return f"element {raw.tag} declares {raw.length} bytes, past the end of the {size}-byte file"
    except RecursionError:
        return "sequences nested too deep"
    except READ_ERRORS as exc:
        return f"unreadable element ({type(exc).__name__}: {exc})"
    return None
