"""Retention of remote images on the consumer: expire them, and drop them once their KOS is deprecated.

Why: a consumer node keeps copies of other sites' images only as long as they are useful
(``retrieve.retention_s``), and never once the source withdrew them — the registry then shows the
exam's KOS deprecated (F4), and what it referenced must no longer be shown or served from here.

Two places hold such copies:

- retrieved studies, ``<work_dir>/<kos_uid>/`` (:mod:`drimbox.retrieve.jobs`, the CLI), each with a
  small index ``retention.json`` (kos_uid, study_uid, retrieved_at) written atomically by
  :meth:`RetentionSweeper.record_retrieved`; a directory without one gets one on first sight (its
  modification time as retrieval time, its name as KOS UID) so nothing is kept forever;
- remote studies cached by the viewer's DICOMweb gateway (the node cache, a
  :class:`~dicomweb_gateway.backends.filesystem.FileStore` that also caches local studies): only
  studies recorded with :meth:`RetentionSweeper.record_remote` are ever dropped from it, their
  records kept under ``<work_dir>/.remote/<study_uid>.json``.

A registry that cannot be reached keeps everything that has not expired (reported in the sweep);
each KOS is asked about once per sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from drimbox.retrieve.model import Exam

__all__ = ["INDEX_NAME", "RetentionRecord", "RetentionSweeper", "StudyCache", "SweepReport", "write_index"]

log = structlog.get_logger(__name__)

INDEX_NAME = "retention.json"
_REMOTE = ".remote"


class StudyCache(Protocol):
    """What the sweeper needs of the DICOMweb cache (:class:`dicomweb_gateway.backends.filesystem.FileStore`)."""

    def delete_study(self, study_uid: str) -> int | None: ...


@dataclass(frozen=True, slots=True)
class RetentionRecord:
    """The retention index of one retrieved (or viewer-cached) remote study."""

    kos_uid: str
    study_uid: str
    retrieved_at: float


@dataclass(slots=True)
class SweepReport:
    """What one sweep dropped, and what it could not decide."""

    expired: list[str] = field(default_factory=list)
    """KOS UIDs of retrieved studies dropped for age."""
    deprecated: list[str] = field(default_factory=list)
    """KOS UIDs of retrieved studies dropped because the registry shows their KOS deprecated."""
    cache_dropped: list[str] = field(default_factory=list)
    """Study UIDs removed from the DICOMweb cache."""
    kept: int = 0
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)


def write_index(path: Path, record: RetentionRecord) -> None:
    """Write a record atomically (temp file, fsync, rename): a crash leaves the old one or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    with partial.open("w", encoding="utf-8") as out:
        json.dump({"kos_uid": record.kos_uid, "study_uid": record.study_uid, "retrieved_at": record.retrieved_at},
                  out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def _read_index(path: Path) -> RetentionRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RetentionRecord(str(data["kos_uid"]), str(data.get("study_uid", "")), float(data["retrieved_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _size(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


class RetentionSweeper:
    """Drops expired or deprecated remote studies; :meth:`sweep` once, or :meth:`start` a background thread.

    Parameters
    ----------
    work_dir:
        ``retrieve.work_dir`` (default ``<data_dir>/retrieved``).
    retention_s:
        ``retrieve.retention_s``.
    is_deprecated:
        ``kos_uid -> bool``, e.g. ``lambda uid: directory.is_deprecated(uid)`` on the node's
        :class:`~drimbox.retrieve.model.ExamDirectory`; may raise when the registry is unreachable.
    cache:
        The DICOMweb node cache, for studies recorded with :meth:`record_remote`.
    on_dropped:
        Called with each Study UID dropped (e.g. ``RemoteStudies.forget``).
    clock:
        Seconds since the epoch (tests).
    """

    def __init__(self, work_dir: Path, retention_s: float, is_deprecated: Callable[[str], bool], *,
                 cache: StudyCache | None = None, on_dropped: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.work_dir = Path(work_dir)
        self.retention_s = retention_s
        self._is_deprecated = is_deprecated
        self._cache = cache
        self._on_dropped = on_dropped
        self._clock = clock
        self._lock = threading.Lock()  # one sweep at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- records -------------------------------------------------------------------------------

    def record_retrieved(self, exam: Exam, directory: Path) -> None:
        """Note that ``exam`` was (re)retrieved into ``directory`` now (``ImportJobs(on_retrieved=...)``)."""
        write_index(directory / INDEX_NAME, RetentionRecord(exam.kos_uid, exam.study_uid, self._clock()))

    def record_remote(self, exam: Exam) -> None:
        """Note that a remote study may now be in the DICOMweb cache (opened in the viewer); first time counts."""
        path = self.work_dir / _REMOTE / f"{exam.study_uid}.json"
        if _read_index(path) is None:
            write_index(path, RetentionRecord(exam.kos_uid, exam.study_uid, self._clock()))

    # -- the sweep -----------------------------------------------------------------------------

    def sweep(self) -> SweepReport:
        """Drop what expired or was deprecated; never raises for one bad entry (it is reported)."""
        report = SweepReport()
        with self._lock:
            if not self.work_dir.is_dir():
                return report
            verdicts: dict[str, bool | None] = {}
            for directory in sorted(p for p in self.work_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    self._sweep_retrieved(directory, verdicts, report)
                except OSError as exc:
                    report.errors.append(f"{directory.name}: {exc}")
            remote = self.work_dir / _REMOTE
            if remote.is_dir():
                for path in sorted(remote.glob("*.json")):
                    try:
                        self._sweep_remote(path, verdicts, report)
                    except OSError as exc:
                        report.errors.append(f"{path.name}: {exc}")
        if report.expired or report.deprecated or report.cache_dropped or report.errors:
            log.info("retention sweep", expired=len(report.expired), deprecated=len(report.deprecated),
                     cache_dropped=len(report.cache_dropped), freed_bytes=report.freed_bytes, errors=report.errors)
        return report

    def _verdict(self, kos_uid: str, verdicts: dict[str, bool | None], report: SweepReport) -> bool | None:
        if kos_uid not in verdicts:
            try:
                verdicts[kos_uid] = bool(self._is_deprecated(kos_uid))
            except Exception as exc:  # the registry is down: keep, and say so
                verdicts[kos_uid] = None
                report.errors.append(f"KOS {kos_uid}: deprecation not known ({type(exc).__name__}: {exc})")
        return verdicts[kos_uid]

    def _why_drop(self, record: RetentionRecord, verdicts: dict[str, bool | None],
                  report: SweepReport) -> str | None:
        if self._clock() - record.retrieved_at > self.retention_s:
            return "expired"
        if self._verdict(record.kos_uid, verdicts, report):
            return "deprecated"
        return None

    def _sweep_retrieved(self, directory: Path, verdicts: dict[str, bool | None], report: SweepReport) -> None:
        index = directory / INDEX_NAME
        record = _read_index(index)
        if record is None:
            record = RetentionRecord(directory.name, "", directory.stat().st_mtime)
            write_index(index, record)
        why = self._why_drop(record, verdicts, report)
        if why is None:
            report.kept += 1
            return
        freed = _size(directory)
        shutil.rmtree(directory)
        report.freed_bytes += freed
        (report.expired if why == "expired" else report.deprecated).append(record.kos_uid)
        log.info("retrieved study dropped", kos_uid=record.kos_uid, study_uid=record.study_uid, reason=why)
        if record.study_uid:
            self._drop_cached(record.study_uid, report)

    def _sweep_remote(self, path: Path, verdicts: dict[str, bool | None], report: SweepReport) -> None:
        record = _read_index(path)
        if record is None:
            path.unlink()
            return
        if self._why_drop(record, verdicts, report) is None:
            report.kept += 1
            return
        if self._drop_cached(record.study_uid, report):
            path.unlink(missing_ok=True)

    def _drop_cached(self, study_uid: str, report: SweepReport) -> bool:
        """Remove a remote study from the cache; ``False`` when it is in use (tried again next sweep)."""
        if self._cache is not None:
            removed = self._cache.delete_study(study_uid)
            if removed is None:
                report.errors.append(f"study {study_uid}: in use in the DICOMweb cache, dropped at the next sweep")
                return False
            if removed and study_uid not in report.cache_dropped:
                report.cache_dropped.append(study_uid)
        if self._on_dropped is not None:
            self._on_dropped(study_uid)
        return True

    # -- background ----------------------------------------------------------------------------

    def start(self, interval_s: float = 3600.0) -> None:
        """Sweep now, then every ``interval_s`` seconds, in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while True:
                try:
                    self.sweep()
                except Exception:  # a sweep must never kill the thread
                    log.exception("retention sweep failed")
                if self._stop.wait(interval_s):
                    return

        self._thread = threading.Thread(target=run, name="drimbox-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread (waits for a sweep in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
