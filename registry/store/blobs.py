"""Document bytes, content-addressed by SHA-256.

A document is durable before its index row is committed: written to a temporary file, fsynced,
renamed into place and its directory fsynced. A crash after the file and before the row leaves an
orphan file (harmless, same hash the next time); the reverse — a row without its file — cannot happen.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["BlobNotFound", "BlobStore", "FileBlobStore"]


class BlobNotFound(KeyError):
    """No document with this SHA-256 in the store."""


@runtime_checkable
class BlobStore(Protocol):
    """Where document bytes live."""

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its SHA-256 (hex), the key."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``; :class:`BlobNotFound` if absent."""
        ...

    def probe(self) -> None:
        """Write, sync and remove a scratch file; :class:`OSError` when the store does not take writes."""
        ...


class FileBlobStore:
    """Files under ``root/ab/cd/<sha256>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise BlobNotFound(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        """Store ``data`` (temp file + fsync + rename + directory fsync); return its SHA-256."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():  # same bytes already durable: content addressing makes this idempotent
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix=key[:8])
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return key

    def get(self, key: str) -> bytes:
        """The stored bytes."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc


    def probe(self) -> None:
        """Write, fsync and delete a scratch file where documents are written first (readiness)."""
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="probe-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"probe")
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            Path(name).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
