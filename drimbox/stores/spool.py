"""The spool: where instances wait between the PACS and the client (or the cache).

Each retrieval gets its own directory, removed when the retrieval ends whatever happens (all sent,
client gone, error), so nothing accumulates; what a crash leaves behind is removed when the node
starts. Spooled files are transient copies: they are not fsync'ed (the cache makes its own durable
copy), and each one is deleted as soon as the consumer has moved on to the next instance.

Keep the spool on the same file system as the cache: the cache's copy is then a local copy, and
the page cache still holds the bytes just written.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Spool", "discard"]


class Spool:
    """A directory of per-retrieval working directories.

    Parameters
    ----------
    root
        Created if missing; its previous content (left by a crash) is deleted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.iterdir():
            _remove(leftover)
        self.stow_dir = root / "stow"
        """Where the gateway spools STOW-RS parts while parsing."""
        self.stow_dir.mkdir()

    @contextlib.contextmanager
    def job(self, label: str = "retrieve") -> Iterator[Path]:
        """A fresh directory for one retrieval, deleted with its content when the block ends."""
        path = self.root / f"{label}-{uuid.uuid4().hex}"
        path.mkdir()
        try:
            yield path
        finally:
            _remove(path)

    def file(self, suffix: str = ".dcm") -> Path:
        """A fresh file name in the spool (the caller creates and deletes the file)."""
        return self.root / f"{uuid.uuid4().hex}{suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """Delete a spooled file if it is still there (the cache may have taken it already)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
