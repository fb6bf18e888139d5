"""File a received instance under ``root/<study>/<series>/<sop>.dcm``, atomically and durably.

With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes each incoming data set, as its fragments
arrive, to a ``NamedTemporaryFile(delete=False)`` in the system temporary directory, in DICOM file
format (file meta built from the C-STORE command and the accepted transfer syntax), and hands the
path to the ``EVT_C_STORE`` handler. What happens to that file afterwards differs by path:

- as an SCP (``StorageServiceClass.SCP``) pynetdicom closes and unlinks it after the handler;
- as a C-GET SCU (``Association._c_store_scp``) it neither closes nor unlinks it.

So the handler always takes the file away: :func:`place_instance` renames it into place (the
later unlink then fails silently), or copies it when the temporary directory is on another file
system; :func:`discard` removes it when it is refused. Either way nothing is left in ``/tmp``.

Only the header is parsed (up to Pixel Data, large values deferred): pixel data is never decoded.
UIDs used as path components are checked against the UID syntax, so a crafted UID cannot escape
``root``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from pydicom import dcmread

from dicomweb_gateway.part10 import READ_ERRORS, length_problem
from drimbox.pacs._uids import is_uid
from drimbox.pacs.models import RetrievedInstance

__all__ = ["UnfileableInstance", "discard", "place_instance"]

_HEADER_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class UnfileableInstance(ValueError):
    """The data set cannot be parsed, or lacks valid UIDs to file it by."""


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_header(path: Path) -> tuple[str, str, str | None, str | None, str]:
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS), defer_size=4096)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        # Hostile input (issue 7): a value declared past the end of the file (a "4 GiB" element, a cut
        # data set) is refused here, before it is filed and served (0xC000 to the sender).
        with path.open("rb") as fp:
            problem = length_problem(fp, path.stat().st_size, ds)
    except READ_ERRORS as exc:
        raise UnfileableInstance(f"cannot parse the data set header: {exc}") from exc
    if problem is not None:
        raise UnfileableInstance(f"corrupt data set: {problem}")
    study = ds.get("StudyInstanceUID")
    series = ds.get("SeriesInstanceUID")
    for keyword, value in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)):
        if not is_uid(value):
            raise UnfileableInstance(f"{keyword} missing or not a valid UID: {value!r}")
    sop = ds.get("SOPInstanceUID")
    sop_class = ds.get("SOPClassUID")
    return str(study), str(series), (str(sop) if sop else None), (str(sop_class) if sop_class else None), syntax


def place_instance(
    temp: Path, root: Path, *, sop_class_uid: str, sop_instance_uid: str, fsync: bool = True
) -> RetrievedInstance:
    """Move the received file ``temp`` to ``root/<study>/<series>/<sop>.dcm``.

    ``sop_class_uid`` and ``sop_instance_uid`` are the C-STORE request's affected UIDs; the data
    set must carry the same SOP Instance UID. With ``fsync`` the file's data and the directory
    entry are flushed to stable storage before returning (before the C-STORE response says
    Success). An existing file for the same instance is replaced.

    Raises
    ------
    UnfileableInstance
        Unparseable header, missing/invalid Study or Series Instance UID, or a data set whose SOP
        Instance UID is not the request's.
    OSError
        When the file cannot be written (disk full, permissions).
    """
    if not is_uid(sop_instance_uid):
        raise UnfileableInstance(f"the request's SOP Instance UID is not a valid UID: {sop_instance_uid!r}")
    study, series, sop, sop_class, syntax = _read_header(temp)
    if sop is not None and sop != sop_instance_uid:
        raise UnfileableInstance(f"the data set's SOP Instance UID {sop} is not the request's {sop_instance_uid}")
    if sop_class is not None and sop_class != sop_class_uid:
        raise UnfileableInstance(f"the data set's SOP Class UID {sop_class} is not the request's {sop_class_uid}")
    directory = root / study / series
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{sop_instance_uid}.dcm"
    size = temp.stat().st_size
    if fsync:
        _fsync_path(temp)
    try:
        os.replace(temp, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_into_place(temp, target, fsync=fsync)
    if fsync:
        _fsync_path(directory, directory=True)
    return RetrievedInstance(
        path=target,
        study_instance_uid=study,
        series_instance_uid=series,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=syntax,
        size=size,
    )


def _copy_into_place(temp: Path, target: Path, *, fsync: bool) -> None:
    """Cross-file-system move: copy next to ``target``, flush, then rename over it."""
    partial = target.with_name(f".{target.name}.tmp")
    try:
        with temp.open("rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            if fsync:
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    discard(temp)


def discard(temp: Path) -> None:
    """Remove a received temporary file that is not kept."""
    with contextlib.suppress(OSError):
        temp.unlink()
