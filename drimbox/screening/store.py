"""The screening state of one node, in SQLite under its data directory (SQLAlchemy 2).

One file, ``<data_dir>/screening.sqlite3``, three tables, one per role a node may play (a node may play
several, as site A does in the demo — L1 site and programme):

- ``requests`` — **programme**: every second-read request, its assignment, status and the L2 result;
- ``cases`` — **reader's node**: the cases assigned to its readers (the worklist), prefetch state,
  the reading;
- ``results`` — **L1 site**: the results that came back for its exams.

Times come from an injected clock (UTC), so that turnaround figures can be tested exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import JSON, Boolean, DateTime, LargeBinary, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from drimbox.screening.model import CaseStatus

__all__ = ["CaseRow", "Clock", "RequestRow", "ResultRow", "ScreeningStore", "utcnow"]

Clock = Callable[[], datetime]
_Row = TypeVar("_Row", bound="_Base")


def utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class _Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class RequestRow(_Base):
    """A second-read request as the programme keeps it."""

    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime]
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    kos_uid: Mapped[str] = mapped_column(String(64))
    patient: Mapped[dict[str, Any]]
    l1: Mapped[dict[str, Any]]
    single_breast: Mapped[str | None] = mapped_column(String(1))
    priority: Mapped[str] = mapped_column(String(16))
    l1_site_url: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reader_rpps: Mapped[str | None] = mapped_column(String(11), index=True)
    reader_node: Mapped[str | None] = mapped_column(String(300))
    assigned_at: Mapped[datetime | None]
    l2: Mapped[dict[str, Any] | None]
    result_at: Mapped[datetime | None]
    discordant: Mapped[bool | None] = mapped_column(Boolean)
    sr: Mapped[bytes | None] = mapped_column(LargeBinary)
    delivery_error: Mapped[str | None] = mapped_column(String(500))


class CaseRow(_Base):
    """A case on a reader's worklist (the reader's node)."""

    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime]
    assignment: Mapped[dict[str, Any]]
    reader_rpps: Mapped[str] = mapped_column(String(11), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priors: Mapped[dict[str, Any]]
    """``{"studies": [{"study_uid", "kos_uid", "performed"}…]}``, most recent first."""
    prefetched_at: Mapped[datetime | None]
    prefetch_error: Mapped[str | None] = mapped_column(String(500))
    opened_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    l2: Mapped[dict[str, Any] | None]
    sr: Mapped[bytes | None] = mapped_column(LargeBinary)
    delivery_error: Mapped[str | None] = mapped_column(String(500))


class ResultRow(_Base):
    """A result that came back to the L1 site."""

    __tablename__ = "results"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime]
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    ins: Mapped[str] = mapped_column(String(15), index=True)
    l1: Mapped[dict[str, Any]]
    l2: Mapped[dict[str, Any]]
    discordant: Mapped[bool] = mapped_column(Boolean)
    sr: Mapped[bytes] = mapped_column(LargeBinary)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class ScreeningStore:
    """The node's screening tables (thread-safe: one short session per operation).

    Parameters
    ----------
    path
        The SQLite file (``None``: in memory, for tests of one process).
    clock
        UTC now; injected so turnaround times are exact in tests.
    """

    def __init__(self, path: Path | None, *, clock: Clock = utcnow) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}" if path is not None else "sqlite://"
        self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(self.engine, "connect", _sqlite_pragmas)
        _Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.clock = clock

    @classmethod
    def at(cls, data_dir: Path, *, clock: Clock = utcnow) -> ScreeningStore:
        """The store of a node: ``<data_dir>/screening.sqlite3``."""
        return cls(data_dir / "screening.sqlite3", clock=clock)

    def close(self) -> None:
        self.engine.dispose()

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction (committed on success)."""
        with self._sessions.begin() as session:
            yield session

    # -- programme ---------------------------------------------------------------------------------

    def add_request(self, **fields: Any) -> RequestRow:
        """A new request (status ``requested``, created now)."""
        row = RequestRow(id=str(uuid.uuid4()), created_at=self.now(), status=CaseStatus.REQUESTED.value, **fields)
        with self.session() as s:
            s.add(row)
        return self._fix(row)

    def request(self, request_id: str) -> RequestRow | None:
        with self.session() as s:
            row = s.get(RequestRow, request_id)
        return self._fix(row) if row is not None else None

    def requests(self, *, status: str | None = None, reader_rpps: str | None = None) -> list[RequestRow]:
        """Requests, oldest first."""
        query = select(RequestRow).order_by(RequestRow.created_at)
        if status is not None:
            query = query.where(RequestRow.status == status)
        if reader_rpps is not None:
            query = query.where(RequestRow.reader_rpps == reader_rpps)
        with self.session() as s:
            rows = list(s.scalars(query))
        return [self._fix(r) for r in rows]

    def update_request(self, request_id: str, **fields: Any) -> RequestRow:
        with self.session() as s:
            row = s.get(RequestRow, request_id)
            if row is None:
                raise KeyError(request_id)
            for key, value in fields.items():
                setattr(row, key, value)
        return self._fix(row)

    # -- reader's node -----------------------------------------------------------------------------

    def add_case(self, request_id: str, assignment: dict[str, Any], reader_rpps: str) -> CaseRow:
        """A case assigned to one of this node's readers (idempotent: a repeated assignment is kept once)."""
        with self.session() as s:
            row = s.get(CaseRow, request_id)
            if row is None:
                row = CaseRow(id=request_id, received_at=self.now(), assignment=assignment, reader_rpps=reader_rpps,
                              status=CaseStatus.WAITING.value, priors={"studies": []})
                s.add(row)
        return self._fix(row)

    def case(self, case_id: str) -> CaseRow | None:
        with self.session() as s:
            row = s.get(CaseRow, case_id)
        return self._fix(row) if row is not None else None

    def cases(self, *, reader_rpps: str | None = None) -> list[CaseRow]:
        """Cases, oldest first (a reader's own when ``reader_rpps``)."""
        query = select(CaseRow).order_by(CaseRow.received_at)
        if reader_rpps is not None:
            query = query.where(CaseRow.reader_rpps == reader_rpps)
        with self.session() as s:
            rows = list(s.scalars(query))
        return [self._fix(r) for r in rows]

    def update_case(self, case_id: str, **fields: Any) -> CaseRow:
        with self.session() as s:
            row = s.get(CaseRow, case_id)
            if row is None:
                raise KeyError(case_id)
            for key, value in fields.items():
                setattr(row, key, value)
        return self._fix(row)

    # -- L1 site -----------------------------------------------------------------------------------

    def add_result(self, request_id: str, **fields: Any) -> ResultRow:
        """A result received for one of this site's exams (a repeated delivery replaces it)."""
        with self.session() as s:
            row = s.get(ResultRow, request_id)
            if row is None:
                row = ResultRow(id=request_id, received_at=self.now(), **fields)
                s.add(row)
            else:
                for key, value in fields.items():
                    setattr(row, key, value)
        return self._fix(row)

    def results(self, *, study_uid: str | None = None) -> Sequence[ResultRow]:
        query = select(ResultRow).order_by(ResultRow.received_at)
        if study_uid is not None:
            query = query.where(ResultRow.study_uid == study_uid)
        with self.session() as s:
            rows = list(s.scalars(query))
        return [self._fix(r) for r in rows]

    @staticmethod
    def _fix(row: _Row) -> _Row:
        for name in ("created_at", "assigned_at", "result_at", "received_at", "prefetched_at", "opened_at",
                     "done_at"):
            if hasattr(row, name):
                setattr(row, name, _aware(getattr(row, name)))
        return row
