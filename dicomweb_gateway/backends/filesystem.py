"""An on-disk store of Part 10 files with a SQLite index: the node cache, and a test backend.

Layout under ``root``::

    objects/<study>/<series>/<sop instance>.dcm   the files, served at file-read speed
    tmp/                                         writes in progress (removed on start)
    index.sqlite3                                one row per instance + completeness records

Crash safety — a reader never sees a half-written file:

1. the bytes are copied into ``tmp/`` and fsync'ed;
2. the header is parsed from that copy (so a truncated copy fails here);
3. the file is renamed into ``objects/`` (atomic) and the directory fsync'ed;
4. only then is the index row committed. Only indexed files are ever served.

On open, everything in ``tmp/`` is deleted and files in ``objects/`` without an index row (a crash
between 3 and 4) are deleted too; index rows whose file vanished are dropped.

Size is bounded by ``max_bytes``: after each write the least recently used instances (by last
retrieval or store) are evicted until the total fits, except instances of studies being streamed
at that moment (pinned), which are evicted later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True)
class StoredInstance:
    """An instance as the index knows it."""

    file: InstanceFile
    modality: str


class FileStore:
    """A :class:`~dicomweb_gateway.backend.DicomStore` over files on disk.

    Parameters
    ----------
    root
        Directory (created if needed).
    max_bytes
        Size bound of the stored files; ``None`` for unbounded.
    """

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
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

    # ------------------------------------------------------------------------------ housekeeping

    def close(self) -> None:
        """Close the index."""
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

        Raises
        ------
        InvalidDicomError
            Not a readable Part 10 file with the identifying attributes.
        """
        tmp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as out:
                if isinstance(source, Path):
                    # Unbuffered: a slow source (pipe, socket-backed file) is copied as it comes.
                    with source.open("rb", buffering=0) as src:
                        while chunk := src.read(1 << 20):
                            out.write(chunk)
                else:
                    shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            ds, attrs = _read_header(tmp)
            final = self._objects / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
            final.parent.mkdir(parents=True, exist_ok=True)
            size = tmp.stat().st_size
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        instance = InstanceFile(
            path=final,
            study_uid=str(ds.StudyInstanceUID),
            series_uid=str(ds.SeriesInstanceUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
            size=size,
        )
        modality = str(ds.get("Modality", "") or "")
        number = ds.get("InstanceNumber")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (instance.sop_instance_uid, instance.study_uid, instance.series_uid, instance.sop_class_uid,
                 instance.transfer_syntax, modality, int(number) if number not in (None, "") else None, size,
                 str(final), attrs, time.time()),
            )  # fmt: skip
        self._evict()
        return StoredInstance(instance, modality)

    # ---------------------------------------------------------------------------------- eviction

    def _evict(self) -> None:
        if self.max_bytes is None:
            return
        with self._lock:
            excess = self.total_bytes - self.max_bytes
            if excess <= 0:
                return
            pinned = set(self._pins)
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
        """Stream already-looked-up files, pinned against eviction and marked as used."""
        with self.pinned(study_uid):
            self.touch([i.sop_instance_uid for i in found])
            for instance in found:
                if not instance.path.is_file():
                    raise BackendError(f"cached file of {instance.sop_instance_uid} disappeared")
                yield instance

    @contextlib.contextmanager
    def pinned(self, study_uid: str) -> Iterator[None]:
        """Keep the study's files from eviction while the block runs (a retrieval in progress)."""
        with self._lock:
            self._pins[study_uid] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pins[study_uid] -= 1
                if self._pins[study_uid] <= 0:
                    del self._pins[study_uid]

    def touch(self, sop_instance_uids: Sequence[str]) -> None:
        """Mark instances as just used (LRU)."""
        now = time.time()
        with self._lock:
            self._db.executemany(
                "UPDATE instances SET last_access = ? WHERE sop_instance_uid = ?", [(now, u) for u in sop_instance_uids]
            )

    # ----------------------------------------------------------------------------- completeness

    def mark_complete(self, study_uid: str, series_uid: str | None, members: Sequence[str]) -> None:
        """Record that ``members`` are all the instances of the study/series (see :mod:`..cache`)."""
        series = series_uid or ""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM complete_members WHERE study_uid = ? AND series_uid = ?", (study_uid, series))
            self._db.executemany(
                "INSERT OR IGNORE INTO complete_members VALUES (?, ?, ?)", [(study_uid, series, m) for m in members]
            )
            self._db.execute("INSERT OR REPLACE INTO complete VALUES (?, ?, ?)", (study_uid, series, time.time()))
            self._db.execute("COMMIT")

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
        with self._lock:
            rows = self._db.execute(
                f"SELECT attrs FROM instances{where} ORDER BY study_uid, series_uid, instance_number, rowid", args
            ).fetchall()
        for (attrs,) in rows:
            ds = _dataset(attrs)
            if matches(query.matching, ds, fuzzy=query.fuzzy):
                yield ds

    def _search_groups(self, query: SearchQuery) -> Iterator[Dataset]:
        where, args = self._where(query)
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
