"""One SQLite file shared by a node's threads (and processes): WAL, explicit write transactions.

Why one helper: the node's small stores (sessions, KOS grants) each need the same few things done
right — autocommit off so transactions are explicit (``BEGIN IMMEDIATE`` takes the write lock up front:
no upgrade deadlock between processes), WAL so readers never block the writer, a busy timeout, and
one lock per connection since a connection is shared by threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

__all__ = ["SqliteFile"]


class SqliteFile:
    """A SQLite database file with its schema applied.

    Parameters
    ----------
    path
        The file (its directory is made).
    schema
        ``CREATE … IF NOT EXISTS`` statements run at open.
    synchronous
        ``FULL`` (SQLite's default: a committed row survives a power cut) or ``NORMAL`` (faster; in WAL
        mode a power cut may lose the last transactions, never corrupt the file).
    """

    def __init__(self, path: Path, schema: str, *, synchronous: Literal["NORMAL", "FULL"] = "FULL") -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.executescript(schema)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
