"""One process at a time on a cache and spool: an advisory lock held for the process's lifetime.

The gateway's :class:`~dicomweb_gateway.FileStore` recovers from crashes when it opens (it deletes
partial writes and files not yet indexed) and the spool deletes its leftovers: both assume nobody
else is writing there. A second process on the same directories — ``drimbox prefetch`` while the
node runs — would delete the node's files in flight. So whoever builds the DICOMweb backends takes
an exclusive ``flock`` on ``<cache_dir>/.lock`` first, and the second one is told why it cannot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from drimbox.errors import ConfigError

__all__ = ["CacheLock"]


class CacheLock:
    """An exclusive, non-blocking advisory lock on ``directory`` (released by :meth:`release` or exit).

    Raises
    ------
    ConfigError
        Another process holds it.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ".lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ConfigError(
                f"dicomweb.cache_dir: {directory} is in use by process {holder} (a running node?); "
                "with the node running, prefetch through its API (POST /api/prefetch)",
                key="dicomweb.cache_dir",
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the directory up."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
