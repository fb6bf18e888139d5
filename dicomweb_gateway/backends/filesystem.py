"""An on-disk store of Part 10 files with a SQLite index: the node cache, and a test backend.

Layout under ``root``::

    objects/<study>/<series>/<sop instance>.dcm   the files, served at file-read speed
    tmp/                                         writes in progress (removed on start)
    index.sqlite3                                one row per instance + completeness records

Crash safety — a reader never sees a half-written file, an index row never names a file that
is not complete and durable:

1. the bytes are put in ``tmp/`` — copied, or, for a file the caller hands over (:meth:`FileStore.adopt`),
   hard-linked (no copy);
2. the file is fsync'ed, its header parsed from that copy (so a truncated copy fails here) —
   except for an adopted file, whose identifiers the backend read already (they are checked);
3. the file is renamed into ``objects/`` (atomic) and the directory fsync'ed;
4. only then is the index row committed. Only indexed files are ever served.

Steps 2-4 run in one **writer thread**, in batches: every file of a batch is flushed, renamed,
each directory touched is fsync'ed once, and all rows are committed in one transaction (one WAL
fsync). :meth:`FileStore.add` waits for its own batch; :meth:`FileStore.adopt` (the cache's
write-behind) does not, and :meth:`FileStore.settle` waits for what is queued. A crash loses what
was queued, never more: on open, everything in ``tmp/`` is deleted and files in ``objects/``
without an index row (a crash between 3 and 4) are deleted too; index rows whose file vanished are
dropped.

Searchable attributes (the header as DICOM JSON, modality, instance number; read by
:meth:`FileStore.search`) are computed when a file is added; for adopted files — the cache, which
the node never searches — when a search first covers them.

Size is bounded by ``max_bytes``: after each batch the least recently used instances (by last
retrieval or store) are evicted until the total fits, except instances of studies being streamed
or still queued (pinned), which are evicted later.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from dicomweb_gateway.attributes import SERIES_KEYWORDS, STUDY_KEYWORDS
from dicomweb_gateway.backend import FailureReason as Failure
from dicomweb_gateway.backend import (
    InstanceFile,
    QueryLevel,
    RetrieveTarget,
    SearchQuery,
    StoreOutcome,
)
from dicomweb_gateway.errors import BackendError, NotFound
from dicomweb_gateway.matching import element_values, matches
from dicomweb_gateway.uids import is_valid_uid

__all__ = ["FileStore", "StoredInstance"]

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    instance_number INTEGER,
    size INTEGER NOT NULL,
    path TEXT NOT NULL,
    attrs TEXT NOT NULL,
    last_access REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_series ON instances (study_uid, series_uid);
CREATE INDEX IF NOT EXISTS instances_by_access ON instances (last_access);
CREATE TABLE IF NOT EXISTS complete (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,          -- '' for a whole study
    verified_at REAL NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS complete_members (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    PRIMARY KEY (study_uid, series_uid, sop_instance_uid)
);
"""
_COLUMNS = "sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax, size, path"
_BULK = 1024
_NOT_YET = ""
"""``attrs`` of an adopted instance until a search computes them."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance as the index knows it."""

    file: InstanceFile
    modality: str


@dataclass
class _Ingest:
    """Put a file of ``tmp/`` in place and index it."""

    tmp: Path
    known: InstanceFile | None = None
    """What the caller knows of an adopted file (else its header is parsed and fully indexed)."""
    study_uid: str | None = None
    done: Future[StoredInstance] | None = None
    row: tuple[Any, ...] | None = None
    stored: StoredInstance | None = None
    error: BaseException | None = None


@dataclass
class _Complete:
    """Record a completeness record (after the rows queued before it)."""

    study_uid: str
    series_uid: str
    members: list[str]
    at: float
    done: Future[None] | None = None


@dataclass
class _Touch:
    """Mark instances as used at ``at``."""

    uids: list[str]
    at: float


_Job = _Ingest | _Complete | _Touch


class FileStore:
    """A :class:`~dicomweb_gateway.backend.DicomStore` over files on disk.

    Parameters
    ----------
    root
        Directory (created if needed).
    max_bytes
        Size bound of the stored files; ``None`` for unbounded.
    batch_max
        Most queued jobs the writer commits in one transaction.
    queue_max
        Most jobs queued before :meth:`adopt` waits for the writer (back-pressure: the disk, not
        memory, sets the pace when it is the slowest).
    """

    def __init__(self, root: Path, *, max_bytes: int | None = None, batch_max: int = 64, queue_max: int = 512) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._objects = root / "objects"
        self._tmp = root / "tmp"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()
        self._db = sqlite3.connect(root / "index.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._recover()
        # The writer: a queue of jobs, one thread started on demand that exits when idle.
        self._batch_max = max(1, batch_max)
        self._queue_max = max(1, queue_max)
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Job] = deque()
        self._queued: Counter[str] = Counter()  # per study: adopted files and records not committed yet
        self._writes_submitted = 0  # files and records queued so far (they are committed in order)
        self._writes_done = 0
        self._writer: threading.Thread | None = None
        self._closing = False
        self._flusher: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------------ housekeeping

    def close(self) -> None:
        """Commit what is queued, stop the writer, close the index."""
        with self._cond:
            self._closing = True
            writer = self._writer
            self._cond.notify_all()
        if writer is not None:
            writer.join()
        if self._flusher is not None:
            self._flusher.shutdown()
        with self._lock:
            self._db.close()

    def _recover(self) -> None:
        """Remove what a crashed writer left: temp files, unindexed objects, rows without files."""
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with self._lock:
            rows = self._db.execute("SELECT sop_instance_uid, path FROM instances").fetchall()
        indexed = {Path(path) for _, path in rows}
        gone = [uid for uid, path in rows if not Path(path).is_file()]
        for path in self._objects.rglob("*.dcm"):
            if path not in indexed:
                with contextlib.suppress(OSError):
                    path.unlink()
        if gone:
            with self._lock:
                self._db.executemany("DELETE FROM instances WHERE sop_instance_uid = ?", [(u,) for u in gone])

    @property
    def total_bytes(self) -> int:
        """Size of all indexed files."""
        with self._lock:
            (total,) = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM instances").fetchone()
        return int(total)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM instances").fetchone()
        return int(count)

    # ------------------------------------------------------------------------------------ store

    def store(self, path: Path) -> StoreOutcome:
        """Store a copy of the Part 10 file at ``path`` (PS3.18 §10.5; duplicates replace)."""
        try:
            self.add(path)
        except InvalidDicomError as exc:
            return StoreOutcome.failed(Failure.CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            return StoreOutcome.failed(Failure.OUT_OF_RESOURCES, str(exc))
        return StoreOutcome.stored()

    def add(self, source: Path | IO[bytes]) -> StoredInstance:
        """Copy a Part 10 file (a path or an open binary stream) into the store, crash-safely.

        Returns once the file is durably in place and indexed.

        Raises
        ------
        InvalidDicomError
            Not a readable Part 10 file with the identifying attributes.
        """
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            _copy_to(source, tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        done: Future[StoredInstance] = Future()
        self._submit(_Ingest(tmp, done=done))
        return done.result()

    def adopt(self, instance: InstanceFile) -> Path:
        """Take a retrieved Part 10 file into the store, without waiting for it (write-behind).

        ``instance.path`` is hard-linked into ``tmp/`` (copied when it is on another file system),
        so it must be complete and never be modified in place afterwards (deleting or replacing it
        by rename is fine: the usual spool file). The writer thread then makes it durable and
        indexes it under the identifiers of ``instance`` — as the backend read them from the file;
        not parsed again, the header is read only if a search needs its attributes — and the study
        is pinned against eviction meanwhile. Identifiers that are not valid UIDs: not stored
        (logged).

        Returns
        -------
        Path
            A link to serve the file from right now, valid until :meth:`release`.
        """
        source = instance.path
        token = uuid.uuid4().hex
        part = self._tmp / f"{token}.part"
        serve = self._tmp / f"{token}.serve"
        try:
            os.link(source, part)
        except OSError:
            try:
                _copy_to(source, part)
            except BaseException:
                with contextlib.suppress(OSError):
                    part.unlink()
                raise
        try:
            os.link(part, serve)
        except OSError:
            serve = source  # no hard links here: the source stays valid until the consumer moves on
        self._submit(_Ingest(part, known=instance, study_uid=instance.study_uid))
        return serve

    def release(self, served: Path) -> None:
        """Drop a serving link returned by :meth:`adopt`."""
        if served.parent == self._tmp:
            with contextlib.suppress(OSError):
                served.unlink()

    def settle(self, study_uid: str | None = None, timeout_s: float | None = None) -> bool:
        """Wait until the files and records queued so far (for ``study_uid``, or for any study,
        with what their commits evict) are committed. Returns whether they were within ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            ticket = self._writes_submitted
            while self._queued[study_uid] > 0 if study_uid is not None else self._writes_done < ticket:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    # ------------------------------------------------------------------------------------ writer

    def _submit(self, job: _Job) -> None:
        study = job.study_uid if isinstance(job, _Ingest | _Complete) else None
        with self._cond:
            while len(self._queue) >= self._queue_max and self._writer is not None:
                self._cond.wait()
            self._queue.append(job)
            if isinstance(job, _Ingest | _Complete):
                self._writes_submitted += 1
            if study is not None:
                self._queued[study] += 1
            if self._writer is None:
                self._closing = False
                self._writer = threading.Thread(target=self._run_writer, name="filestore-writer", daemon=True)
                self._writer.start()
            else:
                self._cond.notify_all()

    def _run_writer(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closing or not self._cond.wait(_IDLE_S) and not self._queue:
                        self._writer = None
                        self._cond.notify_all()
                        return
                batch = [self._queue.popleft() for _ in range(min(self._batch_max, len(self._queue)))]
                self._cond.notify_all()
            try:
                self._process(batch)
            except BaseException as exc:  # noqa: BLE001 - the waiters get it; the writer goes on
                _log.exception("cache writer: batch of %d failed", len(batch))
                _fail(batch, exc)
            finally:
                with self._cond:
                    self._writes_done += sum(isinstance(job, _Ingest | _Complete) for job in batch)
                    for job in batch:
                        if isinstance(job, _Ingest | _Complete) and job.study_uid is not None:
                            self._queued[job.study_uid] -= 1
                            if self._queued[job.study_uid] <= 0:
                                del self._queued[job.study_uid]
                    self._cond.notify_all()

    def _process(self, batch: list[_Job]) -> None:
        """Flush, place and index one batch (steps 2-4 of the module docstring)."""
        ingests = [job for job in batch if isinstance(job, _Ingest)]
        directories = self._place(ingests)
        for directory in directories:
            _fsync_dir(directory)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for job in batch:
                    if isinstance(job, _Ingest) and job.row is not None:
                        self._db.execute("INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                         job.row)  # fmt: skip
                    elif isinstance(job, _Touch):
                        self._db.executemany(
                            "UPDATE instances SET last_access = ? WHERE sop_instance_uid = ?",
                            [(job.at, u) for u in job.uids],
                        )
                    elif isinstance(job, _Complete):
                        self._write_complete(job)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for job in batch:
            if isinstance(job, _Ingest):
                if job.error is not None:
                    if job.done is None:
                        _log.warning("not cached: %s", job.error)
                    else:
                        job.done.set_exception(job.error)
                elif job.done is not None:
                    assert job.stored is not None
                    job.done.set_result(job.stored)
            elif isinstance(job, _Complete) and job.done is not None:
                job.done.set_result(None)
        if ingests:
            self._evict()

    def _place(self, ingests: list[_Ingest]) -> set[Path]:
        """Flush each file, parse its header, rename it into ``objects/``; the directories touched.

        The files of a batch are flushed concurrently: ext4 (jbd2) then commits its journal once
        for all of them instead of once per file — on a busy disk, 5-10x less time than one
        fsync after another.
        """
        flushed = self._flush([job.tmp for job in ingests])
        directories: set[Path] = set()
        for job, outcome in zip(ingests, flushed, strict=True):
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                instance, modality, number, attrs = _identify(job.tmp, outcome, job.known)
                final = self._objects / instance.study_uid / instance.series_uid / f"{instance.sop_instance_uid}.dcm"
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(job.tmp, final)
            except (InvalidDicomError, OSError) as exc:
                job.error = exc
                with contextlib.suppress(OSError):
                    job.tmp.unlink()
                continue
            directories.add(final.parent)
            instance = dataclasses.replace(instance, path=final)
            job.stored = StoredInstance(instance, modality)
            job.row = (instance.sop_instance_uid, instance.study_uid, instance.series_uid, instance.sop_class_uid,
                       instance.transfer_syntax, modality, number, instance.size, str(final), attrs,
                       time.time())  # fmt: skip
        return directories

    def _flush(self, paths: list[Path]) -> list[int | OSError]:
        """fsync each file (concurrently when there are several); its size, or the error."""
        if len(paths) <= 1:
            return [_flush_file(p) for p in paths]
        if self._flusher is None:
            self._flusher = ThreadPoolExecutor(_FLUSH_THREADS, thread_name_prefix="filestore-fsync")
        return list(self._flusher.map(_flush_file, paths))

    # ---------------------------------------------------------------------------------- eviction

    def _evict(self) -> None:
        if self.max_bytes is None:
            return
        with self._lock:
            excess = self.total_bytes - self.max_bytes
            if excess <= 0:
                return
            with self._cond:
                pinned = set(self._pins) | set(self._queued)
            victims: list[tuple[str, str, int]] = []
            for uid, study, path, size in self._db.execute(
                "SELECT sop_instance_uid, study_uid, path, size FROM instances ORDER BY last_access, rowid"
            ):
                if excess <= 0:
                    break
                if study in pinned:
                    continue
                victims.append((uid, path, size))
                excess -= size
            # Index rows go first: a file is never served once its row is gone.
            self._db.executemany("DELETE FROM instances WHERE sop_instance_uid = ?", [(v[0],) for v in victims])
        for _, path, _ in victims:
            with contextlib.suppress(OSError):
                Path(path).unlink()

    def delete_study(self, study_uid: str) -> int | None:
        """Drop every instance of a study (retention: a remote study expired or its KOS deprecated).

        Index rows go first, then the files, as in eviction: a file is never served once its row is
        gone. A study being served or with writes still queued is left alone (``None``): the caller
        tries again later. Returns the number of instances removed.
        """
        if not is_valid_uid(study_uid):  # it names a directory below: never a path
            return 0
        with self._cond:
            if self._pins.get(study_uid) or self._queued.get(study_uid):
                return None
        with self._lock:
            rows = self._db.execute("SELECT path FROM instances WHERE study_uid = ?", (study_uid,)).fetchall()
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,))
                self._db.execute("DELETE FROM complete WHERE study_uid = ?", (study_uid,))
                self._db.execute("DELETE FROM complete_members WHERE study_uid = ?", (study_uid,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for (path,) in rows:
            with contextlib.suppress(OSError):
                Path(path).unlink()
        shutil.rmtree(self._objects / study_uid, ignore_errors=True)
        return len(rows)

    # --------------------------------------------------------------------------------- retrieve

    def instances(self, target: RetrieveTarget) -> list[InstanceFile]:
        """The indexed instances of ``target``, in series then instance-number order."""
        sql = f"SELECT {_COLUMNS} FROM instances WHERE study_uid = ?"
        args: list[str] = [target.study_uid]
        if target.series_uid is not None:
            sql += " AND series_uid = ?"
            args.append(target.series_uid)
        if target.sop_instance_uid is not None:
            sql += " AND sop_instance_uid = ?"
            args.append(target.sop_instance_uid)
        sql += " ORDER BY series_uid, instance_number, rowid"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_instance_file(row) for row in rows]

    def retrieve(self, target: RetrieveTarget) -> Iterator[InstanceFile]:
        """Stream the target's files; raises :class:`NotFound` when none is indexed."""
        found = self.instances(target)
        if not found:
            raise NotFound(f"no such {target.level.value.lower()} in the store")
        return self.serve(target.study_uid, found)

    def serve(self, study_uid: str, found: Sequence[InstanceFile]) -> Iterator[InstanceFile]:
        """Stream already-looked-up files, pinned against eviction and marked as used.

        The iterator is marked ``on_disk``: its ``next()`` never waits, so the gateway may read
        ahead across instances.
        """
        return _OnDisk(self._serve(study_uid, found))

    def _serve(self, study_uid: str, found: Sequence[InstanceFile]) -> Iterator[InstanceFile]:
        with self.pinned(study_uid):
            self.touch([i.sop_instance_uid for i in found])
            for instance in found:
                if not instance.path.is_file():
                    raise BackendError(f"cached file of {instance.sop_instance_uid} disappeared")
                yield instance

    @contextlib.contextmanager
    def pinned(self, study_uid: str) -> Iterator[None]:
        """Keep the study's files from eviction while the block runs (a retrieval in progress)."""
        with self._cond:
            self._pins[study_uid] += 1
        try:
            yield
        finally:
            with self._cond:
                self._pins[study_uid] -= 1
                if self._pins[study_uid] <= 0:
                    del self._pins[study_uid]

    def touch(self, sop_instance_uids: Sequence[str]) -> None:
        """Mark instances as just used (LRU). Queued for the writer: the caller does not wait for
        a commit, and a crash may lose it (the order of eviction is all it feeds)."""
        if sop_instance_uids:
            self._submit(_Touch(list(sop_instance_uids), time.time()))

    # ----------------------------------------------------------------------------- completeness

    def mark_complete(
        self, study_uid: str, series_uid: str | None, members: Sequence[str], *, wait: bool = True
    ) -> None:
        """Record that ``members`` are all the instances of the study/series (see :mod:`..cache`).

        The record is committed after every file queued before it (:meth:`adopt`); ``wait=False``
        returns without waiting for that.
        """
        done: Future[None] | None = Future() if wait else None
        self._submit(_Complete(study_uid, series_uid or "", list(members), time.time(), done))
        if done is not None:
            done.result()

    def _write_complete(self, job: _Complete) -> None:
        study, series = job.study_uid, job.series_uid
        self._db.execute("DELETE FROM complete_members WHERE study_uid = ? AND series_uid = ?", (study, series))
        self._db.executemany(
            "INSERT OR IGNORE INTO complete_members VALUES (?, ?, ?)", [(study, series, m) for m in job.members]
        )
        self._db.execute("INSERT OR REPLACE INTO complete VALUES (?, ?, ?)", (study, series, job.at))

    def completeness(self, target: RetrieveTarget) -> tuple[float, list[str]] | None:
        """``(verified_at, members)`` if the target is recorded complete and every member is still
        stored; ``None`` otherwise. A series is also complete when its whole study is."""
        scopes = [(target.study_uid, "")]
        if target.series_uid is not None:
            scopes.insert(0, (target.study_uid, target.series_uid))
        with self._lock:
            for study, series in scopes:
                row = self._db.execute(
                    "SELECT verified_at FROM complete WHERE study_uid = ? AND series_uid = ?", (study, series)
                ).fetchone()
                if row is None:
                    continue
                members = [m for (m,) in self._db.execute(
                    "SELECT sop_instance_uid FROM complete_members WHERE study_uid = ? AND series_uid = ?",
                    (study, series),
                )]  # fmt: skip
                (missing,) = self._db.execute(
                    "SELECT COUNT(*) FROM complete_members m LEFT JOIN instances i "
                    "ON i.sop_instance_uid = m.sop_instance_uid "
                    "WHERE m.study_uid = ? AND m.series_uid = ? AND i.sop_instance_uid IS NULL",
                    (study, series),
                ).fetchone()
                if missing == 0:
                    return float(row[0]), members
        return None

    # ----------------------------------------------------------------------------------- search

    def search(self, query: SearchQuery) -> Iterator[Dataset]:
        """Match ``query`` against the index (PS3.4 C.2.2.2 via :mod:`dicomweb_gateway.matching`)."""
        if query.level == QueryLevel.IMAGE:
            return self._search_instances(query)
        return self._search_groups(query)

    def _where(self, query: SearchQuery) -> tuple[str, list[str]]:
        clauses: list[str] = []
        args: list[str] = []
        for column, keyword in (("study_uid", "StudyInstanceUID"), ("series_uid", "SeriesInstanceUID"),
                                ("sop_instance_uid", "SOPInstanceUID")):  # fmt: skip
            values = element_values(query.matching.get(Tag(keyword)))
            if values and all(is_valid_uid(v) for v in values):
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                args += values
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _search_instances(self, query: SearchQuery) -> Iterator[Dataset]:
        where, args = self._where(query)
        self._index_adopted(where, args)
        with self._lock:
            rows = self._db.execute(
                f"SELECT attrs FROM instances{where} ORDER BY study_uid, series_uid, instance_number, rowid", args
            ).fetchall()
        for (attrs,) in rows:
            if attrs == _NOT_YET:
                continue  # unreadable header (see _index_adopted)
            ds = _dataset(attrs)
            if matches(query.matching, ds, fuzzy=query.fuzzy):
                yield ds

    def _index_adopted(self, where: str, args: list[str]) -> None:
        """Read once the headers of adopted files in scope: ``attrs``, modality, instance number."""
        pending = f"{where} AND attrs = ?" if where else " WHERE attrs = ?"
        with self._lock:
            rows = self._db.execute(f"SELECT rowid, path FROM instances{pending}", [*args, _NOT_YET]).fetchall()
        updates: list[tuple[str, str, int | None, int]] = []
        for rowid, path in rows:
            try:
                ds, attrs = _read_header(Path(path))
            except InvalidDicomError as exc:  # evicted meanwhile, or damaged: left out of searches
                _log.info("cannot index %s: %s", path, exc)
                continue
            modality = str(ds.get("Modality", "") or "")
            updates.append((attrs, modality, _instance_number(ds.get("InstanceNumber")), rowid))
        if not updates:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "UPDATE instances SET attrs = ?, modality = ?, instance_number = ? WHERE rowid = ?", updates
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _search_groups(self, query: SearchQuery) -> Iterator[Dataset]:
        where, args = self._where(query)
        self._index_adopted(where, args)
        study_level = query.level == QueryLevel.STUDY
        group = "study_uid" if study_level else "study_uid, series_uid"
        with self._lock:
            groups = self._db.execute(
                f"SELECT MIN(rowid), COUNT(*), COUNT(DISTINCT series_uid), GROUP_CONCAT(DISTINCT modality), "
                f"GROUP_CONCAT(DISTINCT sop_class_uid) FROM instances{where} GROUP BY {group} ORDER BY MIN(rowid)",
                args,
            ).fetchall()
            marks = ",".join("?" * len(groups))
            reps: dict[int, str] = dict(
                self._db.execute(f"SELECT rowid, attrs FROM instances WHERE rowid IN ({marks})", [g[0] for g in groups])
            )
        keep = STUDY_KEYWORDS if study_level else STUDY_KEYWORDS | SERIES_KEYWORDS
        for rowid, count, series_count, modalities, sop_classes in groups:
            if reps[rowid] == _NOT_YET:
                continue
            full = _dataset(reps[rowid])
            ds = Dataset()
            for elem in full:
                if elem.keyword in keep or elem.tag == 0x00080005:
                    ds.add(elem)
            if study_level:
                ds.ModalitiesInStudy = sorted(m for m in (modalities or "").split(",") if m)
                ds.SOPClassesInStudy = sorted((sop_classes or "").split(","))
                ds.NumberOfStudyRelatedSeries = series_count
                ds.NumberOfStudyRelatedInstances = count
            else:
                ds.NumberOfSeriesRelatedInstances = count
            if matches(query.matching, ds, fuzzy=query.fuzzy):
                yield ds


class _OnDisk(Iterator[InstanceFile]):
    """A closable iterator of files already on disk (``next()`` never waits for a network)."""

    on_disk = True

    def __init__(self, files: Iterator[InstanceFile]) -> None:
        self._files = files

    def __next__(self) -> InstanceFile:
        return next(self._files)

    def close(self) -> None:
        """Close the underlying generator (unpins the study)."""
        close = getattr(self._files, "close", None)
        if close is not None:
            close()


def _read_header(path: Path) -> tuple[Dataset, str]:
    """The header of a Part 10 file and its searchable attributes as DICOM JSON."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not is_valid_uid(str(ds.get(keyword, ""))):
                raise InvalidDicomError(f"missing or invalid {keyword}")
        if "TransferSyntaxUID" not in ds.file_meta:
            raise InvalidDicomError("no File Meta Information transfer syntax")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise InvalidDicomError(f"not a readable DICOM Part 10 file: {exc}") from exc
    attrs = ds.to_json(bulk_data_threshold=_BULK, bulk_data_element_handler=lambda _elem: "")
    return ds, attrs


def _identify(path: Path, size: int, known: InstanceFile | None) -> tuple[InstanceFile, str, int | None, str]:
    """The instance, its modality, instance number and ``attrs``: from ``known`` (adopted; only
    checked, since its UIDs become path components), else from the header."""
    if known is not None:
        for value in (known.study_uid, known.series_uid, known.sop_instance_uid, known.sop_class_uid):
            if not is_valid_uid(value):
                raise InvalidDicomError(f"not stored: {value!r} is not a valid UID")
        return dataclasses.replace(known, size=size), "", None, _NOT_YET
    ds, attrs = _read_header(path)
    instance = InstanceFile(
        path=path,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        size=size,
    )
    return instance, str(ds.get("Modality", "") or ""), _instance_number(ds.get("InstanceNumber")), attrs


def _instance_number(value: object) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _copy_to(source: Path | IO[bytes], tmp: Path) -> None:
    """Copy into a new file (not flushed: the writer does that)."""
    with tmp.open("xb") as out:
        if isinstance(source, Path):
            # Unbuffered: a slow source (pipe, socket-backed file) is copied as it comes.
            with source.open("rb", buffering=0) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        else:
            shutil.copyfileobj(source, out, 1 << 20)


def _fail(batch: Sequence[_Job], exc: BaseException) -> None:
    for job in batch:
        done = getattr(job, "done", None)
        if done is not None and not done.done():
            done.set_exception(exc)


_IDLE_S = 2.0
"""The writer thread ends after this long without work (a new one starts with the next job)."""


def _load_sync_file_range() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


_FLUSH_THREADS = 8


def _flush_file(path: Path) -> int | OSError:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return exc
    try:
        _start_writeback(fd)
        os.fsync(fd)
        return os.fstat(fd).st_size
    except OSError as exc:
        return exc
    finally:
        os.close(fd)


def _start_writeback(fd: int) -> None:
    """Start writing a file's dirty pages (Linux ``sync_file_range``) before the fsync waits."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _dataset(attrs: str) -> Dataset:
    return Dataset.from_json(attrs, bulk_data_uri_handler=_no_bulk)


def _no_bulk(*_args: Any) -> bytes:
    return b""


def _instance_file(row: tuple[Any, ...]) -> InstanceFile:
    sop, study, series, sop_class, ts, size, path = row
    return InstanceFile(Path(path), study, series, sop, sop_class, ts, int(size))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
