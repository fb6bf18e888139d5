"""The node's audit trail: who accessed which patient data, when, from where, with what outcome.

Every access to patient data (QIDO, WADO, metadata, registry look-ups, contextual calls, imports,
exports) and every publication records an :class:`AuditEvent`. The store is append-only SQLite in
the node's data directory (WAL, one row per event, never updated). The trust issue adds the hash
chain with signed checkpoints, export and syslog forwarding on top of this same interface.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from drimbox.trust.principal import Principal

__all__ = ["AuditEvent", "AuditStore", "AuditTrail", "Outcome"]

Outcome = Literal["success", "failure", "refused"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited access. ``action`` is a short dotted name (``wado.retrieve``, ``contextual-call``,
    ``retrieve.instance-served``, ``import``, ``xdm.export``, ``registry.find`` …)."""

    action: str
    outcome: Outcome
    subject: str | None = None
    rpps: str | None = None
    role: str | None = None
    node: str | None = None
    """The peer node that presented the request (network face) or acted (consumer side)."""
    patient_ins: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    kos_uid: str | None = None
    emergency: bool = False
    source: str | None = None
    """Where the request came from (client address)."""
    detail: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def by(cls, principal: Principal | None, action: str, outcome: Outcome, **fields: object) -> AuditEvent:
        """An event done by ``principal`` (its subject, RPPS, role and node copied)."""
        who: dict[str, object] = {}
        if principal is not None:
            who = {"subject": principal.subject, "rpps": principal.rpps, "role": principal.role,
                   "node": principal.node}
        who.update(fields)
        return cls(action=action, outcome=outcome, **who)  # type: ignore[arg-type]


class AuditTrail(Protocol):
    """Where audit events go."""

    def record(self, event: AuditEvent) -> None:
        """Append ``event`` durably; never raises for a full disk silently (raises OSError/sqlite3.Error)."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    patient_ins TEXT,
    study_uid TEXT,
    kos_uid TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event_at ON audit_event(at);
CREATE INDEX IF NOT EXISTS audit_event_patient ON audit_event(patient_ins);
"""


class AuditStore:
    """Append-only SQLite audit store (thread-safe; one connection, serialised writes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def record(self, event: AuditEvent) -> None:
        body = asdict(event)
        body["at"] = event.at.isoformat()
        body["sop_instance_uids"] = list(event.sop_instance_uids)
        with self._lock:
            self._db.execute(
                "INSERT INTO audit_event (at, action, outcome, patient_ins, study_uid, kos_uid, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (body["at"], event.action, event.outcome, event.patient_ins, event.study_uid, event.kos_uid,
                 json.dumps(body, ensure_ascii=False, sort_keys=True)),
            )

    def events(self, *, action: str | None = None, since: datetime | None = None) -> Iterator[AuditEvent]:
        """The recorded events in order, optionally of one action and from ``since``."""
        sql = "SELECT body FROM audit_event WHERE 1=1"
        args: list[str] = []
        if action is not None:
            sql, args = sql + " AND action = ?", [*args, action]
        if since is not None:
            sql, args = sql + " AND at >= ?", [*args, since.astimezone(UTC).isoformat()]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        for (body,) in rows:
            data = json.loads(body)
            data["at"] = datetime.fromisoformat(data["at"])
            data["sop_instance_uids"] = tuple(data["sop_instance_uids"])
            yield AuditEvent(**data)

    def close(self) -> None:
        with self._lock:
            self._db.close()
