"""KOS grants: what a node may fetch without a user present (DESIGN §2b).

Some work has no practitioner behind it at the moment it runs: the prefetch of a screening second
read before the reader opens the case, a retrieval resumed after the user's token expired or the
consumer restarted. The consumer then presents **its own** credential (a client-credentials token of
its OIDC client, :mod:`drimbox.trust.node_credential`) — and the source admits it for one KOS only if
it holds a grant for (that KOS, that node), unexpired and not revoked.

Grants live at the source, in ``{data_dir}/grants.sqlite``, because the source is the one that
decides: a grant is issued

* by a practitioner, through the source's network face (``POST /api/grants``, :func:`grants_router`):
  the consumer asks, while its user is there, for the right to finish the work later — the grant is for
  the node presenting the practitioner's (node-bound) token, and for a KOS the source publishes;
* in-process by the source's own workflows (the screening programme assigning a second read).

Every grant issued, used (the ``wado.*-served`` events carry its id) and revoked is audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from drimbox.errors import Forbidden, InvalidRequest
from drimbox.sqlite_file import SqliteFile
from drimbox.trust.audit import AuditEvent, AuditTrail
from drimbox.trust.deps import Authenticated
from drimbox.trust.principal import Principal

__all__ = ["MAX_GRANT_S", "Grant", "GrantRequest", "GrantResponse", "KosGrants", "grants_router"]

MAX_GRANT_S = 7 * 86400.0
"""The longest a grant lasts (a second read is due within days; a resumed retrieval within hours)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    kos_uid TEXT NOT NULL,
    node TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS grants_kos_node ON grants (kos_uid, node);
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """The right of ``node`` (its ``db`` host) to fetch the instances of ``kos_uid`` with its own credential."""

    id: str
    kos_uid: str
    node: str
    purpose: str
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.revoked_at is None and self.granted_at <= at < self.expires_at


class KosGrants:
    """The source's grants, in one SQLite file (WAL; safe for threads and processes).

    Parameters
    ----------
    path
        The database file (``{data_dir}/grants.sqlite``).
    audit
        Where ``grant.issued`` / ``grant.revoked`` go.
    clock
        Aware UTC now (tests inject one).
    """

    def __init__(self, path: Path, audit: AuditTrail, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.audit = audit
        self._clock = clock
        self._file = SqliteFile(path, _SCHEMA)
        self._tx = self._file.tx
        self.path = self._file.path

    @classmethod
    def at(cls, data_dir: Path, audit: AuditTrail) -> KosGrants:
        """The store of a node: ``{data_dir}/grants.sqlite``."""
        return cls(Path(data_dir) / "grants.sqlite", audit)

    def close(self) -> None:
        self._file.close()

    def grant(self, kos_uid: str, node: str, *, ttl_s: float, purpose: str, by: Principal | None,
              patient_ins: str | None = None) -> Grant:
        """Issue a grant (audited ``grant.issued``); ``by`` is who decided (``None``: this node's own workflow)."""
        if not 0 < ttl_s <= MAX_GRANT_S:
            raise InvalidRequest(f"a grant lasts more than 0 s and at most {MAX_GRANT_S:.0f} s, not {ttl_s:g}")
        now = self._clock()
        granted_by = (by.rpps or by.subject) if by is not None else "node"
        grant = Grant(id=secrets.token_hex(16), kos_uid=kos_uid, node=node.lower(), purpose=purpose,
                      granted_by=granted_by, granted_at=now, expires_at=now + timedelta(seconds=ttl_s))
        with self._tx() as db:
            db.execute("INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                       (grant.id, grant.kos_uid, grant.node, grant.purpose, grant.granted_by,
                        grant.granted_at.isoformat(), grant.expires_at.isoformat()))
        self.audit.record(AuditEvent.by(by, "grant.issued", "success", kos_uid=kos_uid, patient_ins=patient_ins,
                                        detail=f"grant {grant.id} to node {grant.node} for {purpose}, "
                                               f"until {grant.expires_at.isoformat()}"))
        return grant

    def find(self, kos_uid: str, node: str) -> Grant | None:
        """A grant in force now for (``kos_uid``, ``node``), the one expiring last; ``None`` if there is none."""
        now = self._clock()
        with self._file.lock:
            rows = self._file.db.execute("SELECT * FROM grants WHERE kos_uid = ? AND node = ? AND revoked_at IS NULL",
                                    (kos_uid, node.lower())).fetchall()
        valid = [g for g in map(_grant, rows) if g.valid_at(now)]
        return max(valid, key=lambda g: g.expires_at) if valid else None

    def revoke(self, grant_id: str, *, by: Principal | None = None) -> bool:
        """Revoke a grant (audited ``grant.revoked``); ``False`` if there was none in force by that id."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM grants WHERE id = ? AND revoked_at IS NULL", (grant_id,)).fetchone()
            if row is None:
                return False
            db.execute("UPDATE grants SET revoked_at = ? WHERE id = ?", (self._clock().isoformat(), grant_id))
        grant = _grant(row)
        self.audit.record(AuditEvent.by(by, "grant.revoked", "success", kos_uid=grant.kos_uid,
                                        detail=f"grant {grant.id} of node {grant.node}"))
        return True


def _grant(row: tuple[str, ...]) -> Grant:
    id_, kos_uid, node, purpose, granted_by, granted_at, expires_at, revoked_at = row
    return Grant(id=id_, kos_uid=kos_uid, node=node, purpose=purpose, granted_by=granted_by,
                 granted_at=datetime.fromisoformat(granted_at), expires_at=datetime.fromisoformat(expires_at),
                 revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None)


_UID_PATTERN = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"


class GrantRequest(BaseModel):
    """A consumer's request, while its user is present, to fetch one KOS later with its own credential."""

    kos: Annotated[str, Field(max_length=64, pattern=_UID_PATTERN,
                              description="SOP Instance UID of a KOS this node publishes.")]
    ttl_s: Annotated[float, Field(gt=0, le=MAX_GRANT_S)] = 86400.0
    purpose: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")] = "resume"


class GrantResponse(BaseModel):
    id: str
    kos: str
    node: str
    purpose: str
    expires_at: datetime


def grants_router(grants: KosGrants, is_published: Callable[[str], bool]) -> APIRouter:
    """``POST /api/grants`` of the network face (a practitioner's token, bound to the presenting node).

    ``is_published`` says whether a KOS is one this node publishes (current): no grant for anything else.
    """
    router = APIRouter(prefix="/api", tags=["grants"])

    @router.post("/grants", response_model=GrantResponse, status_code=201)
    async def issue(body: GrantRequest, principal: Authenticated) -> GrantResponse:
        """Grant the presenting node the right to fetch one KOS with its own credential later."""
        if principal.kind not in ("practitioner", "developer"):
            raise Forbidden("only a practitioner may grant a node access to a KOS")
        if principal.node is None:
            raise Forbidden("a grant is for the node presenting the request; this request names none")
        if not await run_in_threadpool(is_published, body.kos):
            raise Forbidden(f"KOS {body.kos} is not a current manifest published by this node")
        grant = await run_in_threadpool(lambda: grants.grant(body.kos, principal.node or "", ttl_s=body.ttl_s,
                                                             purpose=body.purpose, by=principal))
        return GrantResponse(id=grant.id, kos=grant.kos_uid, node=grant.node, purpose=grant.purpose,
                             expires_at=grant.expires_at)

    return router
