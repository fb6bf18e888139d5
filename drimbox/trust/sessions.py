"""Server-side browser sessions of the site's users, after an OpenID Connect login.

Why server-side and in SQLite (``{storage.data_dir}/sessions.sqlite``): the cookie carries nothing but
a random 256-bit id, so the user's access token (forwarded to source nodes, F7) never reaches the
browser; a session can be ended on the server (logout) and survives a restart of the node; and
several node processes behind a load balancer can share one file later. Only a SHA-256 of the id is
stored, so a copy of the database does not let anyone take over a session.

The store also keeps the *pending* logins (state, nonce, PKCE verifier, where to go back), single
use and short-lived, for the same reasons: the callback may reach another process than the one that
started the login, and nothing secret sits in the browser.

A session never outlives the access token it holds: :meth:`SessionStore.create` caps the expiry.
:class:`BrowserSessions` is the :class:`drimbox.web.pages.SessionAccess` the web pages use
(language, emergency access).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import Request

from drimbox.sqlite_file import SqliteFile
from drimbox.trust.principal import Principal

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "BrowserSessions",
    "PendingLogin",
    "Session",
    "SessionStore",
    "new_session_id",
]

SESSION_COOKIE = "drimbox_session"
"""The browser session cookie: a random 256-bit id (HttpOnly, SameSite=Lax, Path=/)."""
LOGIN_COOKIE = "drimbox_login"
"""Binds a login in progress to the browser that started it (its value is the ``state``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key         TEXT PRIMARY KEY,     -- sha256 of the cookie value
    principal   TEXT NOT NULL,        -- JSON of the Principal
    access_token TEXT NOT NULL,
    expires_at  REAL NOT NULL,        -- POSIX seconds (UTC)
    created_at  REAL NOT NULL,
    language    TEXT NOT NULL,
    emergency   INTEGER NOT NULL,
    data        TEXT NOT NULL         -- JSON object of strings
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS pending_logins (
    key           TEXT PRIMARY KEY,   -- sha256 of the state
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    next_url      TEXT NOT NULL,
    redirect_uri  TEXT NOT NULL,
    expires_at    REAL NOT NULL
);
"""


def new_session_id() -> str:
    """A fresh random id: 32 bytes (256 bits) from the OS CSPRNG, URL-safe base64."""
    return secrets.token_urlsafe(32)


def _key(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Session:
    """A logged-in browser: who, with which access token, until when, and what the pages remember."""

    id: str
    principal: Principal
    access_token: str
    expires_at: datetime
    language: str = "fr"
    emergency: bool = False
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """An authorization request sent to the provider, waiting for its callback."""

    state: str
    nonce: str
    code_verifier: str
    next_url: str
    redirect_uri: str
    expires_at: datetime


class SessionStore:
    """Sessions and pending logins in one SQLite file (WAL; safe for threads and processes)."""

    def __init__(
        self,
        path: Path,
        *,
        max_ttl_s: float = 8 * 3600.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.max_ttl_s = max_ttl_s
        self._clock = clock
        self._file = SqliteFile(path, _SCHEMA)
        self.path = self._file.path
        self._lock, self._db, self._tx = self._file.lock, self._file.db, self._file.tx

    @classmethod
    def at(cls, data_dir: Path, *, max_ttl_s: float = 8 * 3600.0) -> SessionStore:
        """The store of a node: ``{data_dir}/sessions.sqlite`` (``storage.data_dir``, ``oidc.session_ttl_s``)."""
        return cls(Path(data_dir) / "sessions.sqlite", max_ttl_s=max_ttl_s)

    def close(self) -> None:
        self._file.close()

    def now(self) -> datetime:
        return self._clock()

    # -- sessions -------------------------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        access_token: str,
        expires_at: datetime,
        *,
        language: str = "fr",
        emergency: bool = False,
        data: Mapping[str, str] | None = None,
    ) -> Session:
        """Open a session until ``expires_at`` (the access token's expiry), at most ``max_ttl_s`` from now."""
        now = self.now()
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        expires = min(expires_at, now + timedelta(seconds=self.max_ttl_s))
        session = Session(id=new_session_id(), principal=principal, access_token=access_token, expires_at=expires,
                          language=language, emergency=emergency, data=dict(data or {}))
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now.timestamp(),))
            db.execute(
                "INSERT INTO sessions (key, principal, access_token, expires_at, created_at, language, emergency, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_key(session.id), json.dumps(asdict(principal)), access_token, expires.timestamp(),
                 now.timestamp(), language, int(emergency), json.dumps(session.data)),
            )
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id; ``None`` when unknown or expired."""
        if not session_id or len(session_id) > 128:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT principal, access_token, expires_at, language, emergency, data FROM sessions WHERE key = ?",
                (_key(session_id),),
            ).fetchone()
        if row is None:
            return None
        principal_json, access_token, expires_ts, language, emergency, data = row
        expires_at = datetime.fromtimestamp(expires_ts, UTC)
        if expires_at <= self.now():
            return None
        return Session(id=session_id, principal=Principal(**json.loads(principal_json)), access_token=access_token,
                       expires_at=expires_at, language=language, emergency=bool(emergency),
                       data={str(k): str(v) for k, v in json.loads(data).items()})

    def update(self, session: Session) -> None:
        """Save what may change during a session: language, emergency flag, data (never the identity or expiry)."""
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET language = ?, emergency = ?, data = ? WHERE key = ?",
                (session.language, int(session.emergency), json.dumps(session.data), _key(session.id)),
            )

    def delete(self, session_id: str) -> None:
        """End a session (logout); unknown ids are ignored."""
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE key = ?", (_key(session_id),))

    def expire(self, session_id: str) -> None:
        """Make a session expire now (for tests and administrative logout of a stolen session)."""
        with self._tx() as db:
            db.execute("UPDATE sessions SET expires_at = ? WHERE key = ?", (self.now().timestamp(), _key(session_id)))

    # -- pending logins -------------------------------------------------------------------------

    def add_login(self, login: PendingLogin) -> None:
        """Remember an authorization request until its callback (or its expiry)."""
        with self._tx() as db:
            db.execute("DELETE FROM pending_logins WHERE expires_at <= ?", (self.now().timestamp(),))
            db.execute(
                "INSERT INTO pending_logins (key, nonce, code_verifier, next_url, redirect_uri, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_key(login.state), login.nonce, login.code_verifier, login.next_url, login.redirect_uri,
                 login.expires_at.timestamp()),
            )

    def take_login(self, state: str) -> PendingLogin | None:
        """The pending login of ``state``, removed (single use); ``None`` when unknown or expired."""
        if not state or len(state) > 128:
            return None
        with self._tx() as db:
            row = db.execute(
                "SELECT nonce, code_verifier, next_url, redirect_uri, expires_at FROM pending_logins WHERE key = ?",
                (_key(state),),
            ).fetchone()
            db.execute("DELETE FROM pending_logins WHERE key = ?", (_key(state),))
        if row is None:
            return None
        nonce, verifier, next_url, redirect_uri, expires_ts = row
        expires_at = datetime.fromtimestamp(expires_ts, UTC)
        if expires_at <= self.now():
            return None
        return PendingLogin(state=state, nonce=nonce, code_verifier=verifier, next_url=next_url,
                            redirect_uri=redirect_uri, expires_at=expires_at)


class BrowserSessions:
    """What the web pages keep in the session (:class:`drimbox.web.pages.SessionAccess`)."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def _session(self, request: Request) -> Session | None:
        found = getattr(request.state, "session", None)
        if isinstance(found, Session):
            return found
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.store.get(cookie) if cookie else None

    def language(self, request: Request) -> str | None:
        session = self._session(request)
        return session.language if session is not None else None

    def set_language(self, request: Request, language: str) -> None:
        session = self._session(request)
        if session is not None and session.language != language:
            session.language = language
            self.store.update(session)

    def mark_emergency(self, request: Request) -> None:
        session = self._session(request)
        if session is not None and not session.emergency:
            session.emergency = True
            self.store.update(session)
            request.state.session = replace(session)
