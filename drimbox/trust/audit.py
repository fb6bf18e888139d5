"""The node's audit trail: who accessed which patient data, when, from where, with what outcome.

Every access to patient data (QIDO, WADO, metadata, registry look-ups, contextual calls, imports,
exports) and every publication records an :class:`AuditEvent`. The store is append-only SQLite in
the node's data directory (WAL, one row per event, never updated).

Tamper evidence (issue #7) — a row alone proves nothing, so each row is bound to all the rows before it:

- **Hash chain.** Row ``seq`` stores ``prev_hash`` (the ``hash`` of row ``seq - 1``, or 64 zeros for the
  first row) and ``hash = SHA-256(canonical JSON [seq, prev_hash, body])`` (:func:`chain_hash`), where
  ``body`` is the stored JSON text of the event, exactly as written. The body stays the node's own JSON
  (what :meth:`AuditStore.events` has always read); the FHIR R4 AuditEvent view is a pure mapping used
  for export (:mod:`drimbox.trust.audit_fhir`), so that a mapping change never invalidates old hashes.
  Writers take SQLite's write lock (``BEGIN IMMEDIATE``) before reading the head, so several threads
  *and several processes* (the node, a CLI) append to one valid chain.
- **Signed checkpoints outside the database.** A chain that is cut at its tail, or recomputed from row
  ``k`` on, is still a valid chain; only something the attacker of the database cannot rewrite reveals
  it. Every ``checkpoint_every`` records, when ``checkpoint_interval_s`` has passed with records not yet
  covered, on :meth:`AuditStore.checkpoint` and at :meth:`AuditStore.close`, the store appends
  ``{seq, hash, at, node}`` signed with the node's private key (EC, RSA or Ed25519) as one JSON line to
  ``audit.checkpoints.jsonl`` next to the database (``O_APPEND`` + ``flock`` + ``fsync``).
  :func:`drimbox.trust.audit_verify.verify_audit` checks both.

Without a signing key the chain is still kept (tests and tools that only read the trail open the store
that way) but no checkpoint is written; the node passes its TLS key (:meth:`AuditStore.for_node`).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from drimbox.trust.principal import Principal

if TYPE_CHECKING:
    from drimbox.config import NodeSettings

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "AuditRecord",
    "AuditStore",
    "AuditTrail",
    "CheckpointSigner",
    "Outcome",
    "SigningKey",
    "chain_hash",
    "checkpoint_payload",
    "checkpoints_path_for",
    "event_from_body",
    "load_signing_key",
    "read_records",
]

_log = logging.getLogger(__name__)

Outcome = Literal["success", "failure", "refused"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record: the chain starts from a fixed value, not from nothing."""


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


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored row: its place in the chain, its hashes, the stored body text and the event it holds."""

    seq: int
    prev_hash: str | None
    hash: str | None
    body: str
    columns: dict[str, str | None]
    """The indexed columns (``at``, ``action``, ``outcome``, ``patient_ins``, ``study_uid``, ``kos_uid``),
    duplicated from the body for queries; the verifier checks they still agree with it."""

    def event(self) -> AuditEvent:
        """The event of the body (raises ``ValueError``/``TypeError`` on a body that is not one)."""
        return event_from_body(self.body)


def chain_hash(seq: int, prev_hash: str, body: str) -> str:
    """SHA-256 (hex) of the canonical serialisation of one record.

    The canonical form is the compact, ASCII-only JSON array ``[seq, prev_hash, body]``: JSON string
    escaping makes the three fields unambiguous (no separator can be forged inside ``body``) and ASCII
    output makes the bytes independent of any encoding choice.
    """
    canonical = json.dumps([seq, prev_hash, body], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _body_of(event: AuditEvent) -> str:
    data = asdict(event)
    data["at"] = event.at.astimezone(UTC).isoformat() if event.at.tzinfo else event.at.isoformat()
    data["sop_instance_uids"] = list(event.sop_instance_uids)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def event_from_body(body: str) -> AuditEvent:
    """Rebuild the :class:`AuditEvent` of a stored body."""
    data = json.loads(body)
    data["at"] = datetime.fromisoformat(data["at"])
    data["sop_instance_uids"] = tuple(data["sop_instance_uids"])
    return AuditEvent(**data)


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

_COLUMNS = ("at", "action", "outcome", "patient_ins", "study_uid", "kos_uid")


def _migrate(db: sqlite3.Connection) -> None:
    """Add the chain columns to a store created before them, and chain its rows once.

    Rows are chained at migration only when no row is chained yet (a store from before the chain):
    a store with a chain and unchained rows is a tampered store, which the verifier must see as is.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        names = {row[1] for row in db.execute("PRAGMA table_info(audit_event)")}
        for column in ("prev_hash", "hash"):
            if column not in names:
                db.execute(f"ALTER TABLE audit_event ADD COLUMN {column} TEXT")
        chained = db.execute("SELECT 1 FROM audit_event WHERE hash IS NOT NULL LIMIT 1").fetchone()
        if chained is None:
            prev = GENESIS_HASH
            for seq, body in db.execute("SELECT seq, body FROM audit_event ORDER BY seq").fetchall():
                digest = chain_hash(seq, prev, body)
                db.execute("UPDATE audit_event SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
                prev = digest
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def checkpoints_path_for(db_path: Path) -> Path:
    """The checkpoint file that goes with an audit database: ``audit.sqlite`` → ``audit.checkpoints.jsonl``."""
    return db_path.with_name(f"{db_path.stem}.checkpoints.jsonl")


def checkpoint_payload(seq: int, digest: str, at: str, node: str) -> bytes:
    """The exact bytes a checkpoint signature covers (canonical JSON of its four fields)."""
    return json.dumps({"at": at, "hash": digest, "node": node, "seq": seq},
                      ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode("ascii")


def load_signing_key(path: Path) -> SigningKey:
    """Read an unencrypted PEM private key (EC, RSA or Ed25519) — the node's TLS key by default."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: unsupported key type {type(key).__name__} for audit checkpoints")
    return key


class CheckpointSigner:
    """Signs checkpoints with the node's key and appends them, durably, to the checkpoint file."""

    def __init__(self, key: SigningKey, path: Path, *, node: str) -> None:
        self.key = key
        self.path = path
        self.node = node
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = hashlib.sha256(spki).hexdigest()
        """SHA-256 of the public key (SPKI DER): tells the verifier which key signed, across key changes."""

    @property
    def alg(self) -> str:
        """The JOSE-style name of the signature algorithm (ES256, PS256 or EdDSA)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return "ES256"
        return "PS256" if isinstance(self.key, rsa.RSAPrivateKey) else "EdDSA"

    def sign(self, payload: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(payload, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                      salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        return self.key.sign(payload)

    def write(self, seq: int, digest: str) -> dict[str, object]:
        """Sign ``(seq, digest, now)`` and append it as one line; fsynced before returning."""
        at = datetime.now(UTC).isoformat()
        signature = self.sign(checkpoint_payload(seq, digest, at, self.node))
        line = {"seq": seq, "hash": digest, "at": at, "node": self.node, "alg": self.alg, "kid": self.key_id,
                "sig": base64.b64encode(signature).decode("ascii")}
        data = (json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            # Several processes may append (the node, a CLI): one whole line at a time.
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        return line

    def last_seq(self) -> int:
        """``seq`` of the last checkpoint in the file (0 when none): read from its tail only."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 8192))
                tail = fh.read().splitlines()
        except FileNotFoundError:
            return 0
        for raw in reversed(tail):
            try:
                return int(json.loads(raw)["seq"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0


class AuditStore:
    """Append-only, hash-chained SQLite audit store (thread-safe; one connection, serialised writes).

    ``signing_key`` turns on signed checkpoints in ``checkpoints_path`` (default next to the database,
    :func:`checkpoints_path_for`); ``on_recorded`` is called after each commit with the event, its ``seq``
    and ``hash`` (a syslog forwarder), ``on_checkpoint`` with each signed checkpoint line; both run under
    the store's lock, so they must not block — their errors are logged, never raised, because the database
    is the trail of record.
    """

    def __init__(
        self,
        path: Path,
        *,
        signing_key: SigningKey | None = None,
        checkpoints_path: Path | None = None,
        node: str = "",
        checkpoint_every: int = 64,
        checkpoint_interval_s: float = 60.0,
        on_recorded: Callable[[AuditEvent, int, str], None] | None = None,
        on_checkpoint: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.checkpoints_path = checkpoints_path or checkpoints_path_for(path)
        self._lock = threading.Lock()
        # Explicit transactions (isolation_level=None): BEGIN IMMEDIATE is what serialises processes.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        _migrate(self._db)
        self._signer = CheckpointSigner(signing_key, self.checkpoints_path, node=node) \
            if signing_key is not None else None
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._on_recorded = on_recorded
        self._on_checkpoint = on_checkpoint
        self._checkpointed = self._signer.last_seq() if self._signer is not None else 0
        self._head = 0
        self._last_checkpoint_time = time.monotonic()
        self._closed = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self._signer is not None and checkpoint_interval_s > 0:
            # An idle node must not leave its last records uncovered until it is closed.
            self._ticker = threading.Thread(target=self._tick, name="audit-checkpoints", daemon=True)
            self._ticker.start()

    @classmethod
    def for_node(cls, settings: NodeSettings, *,
                 on_recorded: Callable[[AuditEvent, int, str], None] | None = None,
                 on_checkpoint: Callable[[dict[str, object]], None] | None = None) -> AuditStore:
        """The node's store at ``<data_dir>/audit.sqlite``, checkpoints signed with ``tls.key_file`` when set."""
        key = load_signing_key(settings.tls.key_file) if settings.tls.key_file is not None else None
        if key is None:
            _log.warning("audit: no tls.key_file; the trail is hash-chained but NOT checkpointed (no signing key)")
        return cls(settings.storage.data_dir / "audit.sqlite", signing_key=key, node=settings.name,
                   on_recorded=on_recorded, on_checkpoint=on_checkpoint)

    def record(self, event: AuditEvent) -> None:
        body = _body_of(event)
        columns = json.loads(body)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = self._db.execute("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
                seq = head[0] + 1 if head is not None else 1
                prev = head[1] if head is not None and head[1] is not None else GENESIS_HASH
                digest = chain_hash(seq, prev, body)
                self._db.execute(
                    "INSERT INTO audit_event (seq, at, action, outcome, patient_ins, study_uid, kos_uid, body,"
                    " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, columns["at"], event.action, event.outcome, event.patient_ins, event.study_uid,
                     event.kos_uid, body, prev, digest),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._head = seq
            if self._on_recorded is not None:
                # Under the lock (the hook only enqueues): a copy sees events in seq order, each before
                # the checkpoint that covers it.
                try:
                    self._on_recorded(event, seq, digest)
                except Exception:  # the forwarder is a copy; the committed row is the record
                    _log.exception("audit: forwarding event %s failed", seq)
            if self._signer is not None and (seq % self._every == 0 or self._interval_due()):
                self._checkpoint_locked()

    def _interval_due(self) -> bool:
        return self._interval > 0 and time.monotonic() - self._last_checkpoint_time >= self._interval

    def checkpoint(self) -> int | None:
        """Sign the current head now; returns its ``seq`` (``None`` without a key or on an empty trail)."""
        with self._lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> int | None:
        if self._signer is None or self._closed:
            return None
        head = self._db.execute("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_checkpoint_time = time.monotonic()
        if head is None or head[1] is None:
            return None
        line = self._signer.write(head[0], head[1])
        self._checkpointed = self._head = head[0]
        if self._on_checkpoint is not None:
            try:
                self._on_checkpoint(line)
            except Exception:
                _log.exception("audit: forwarding checkpoint %s failed", head[0])
        return int(head[0])

    def _tick(self) -> None:
        while not self._stop.wait(min(self._interval, 5.0)):
            with self._lock:
                if self._head > self._checkpointed and self._interval_due():
                    try:
                        self._checkpoint_locked()
                    except (OSError, sqlite3.Error):
                        _log.exception("audit: periodic checkpoint failed")

    def events(self, *, action: str | None = None, since: datetime | None = None,
               patient_ins: str | None = None) -> Iterator[AuditEvent]:
        """The recorded events in order, optionally of one action, from ``since``, of one patient."""
        sql = "SELECT body FROM audit_event WHERE 1=1"
        args: list[str] = []
        if action is not None:
            sql, args = sql + " AND action = ?", [*args, action]
        if since is not None:
            sql, args = sql + " AND at >= ?", [*args, since.astimezone(UTC).isoformat()]
        if patient_ins is not None:
            sql, args = sql + " AND patient_ins = ?", [*args, patient_ins]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        for (body,) in rows:
            yield event_from_body(body)

    def close(self) -> None:
        """Checkpoint the head (when there is a key and something new) and close the database."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10.0)
        with self._lock:
            if self._closed:
                return
            if self._signer is not None:
                head = self._db.execute("SELECT MAX(seq) FROM audit_event").fetchone()[0]
                if head is not None and head != self._checkpointed:
                    self._checkpoint_locked()
            self._closed = True
            self._db.close()


def read_records(db_path: Path) -> list[AuditRecord]:
    """Every row of an audit database in ``seq`` order, read-only (one consistent snapshot)."""
    if not db_path.exists():
        raise FileNotFoundError(db_path)
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = {row[1] for row in db.execute("PRAGMA table_info(audit_event)")}
        chain = "prev_hash, hash" if {"prev_hash", "hash"} <= names else "NULL, NULL"
        rows = db.execute(f"SELECT seq, {chain}, body, {', '.join(_COLUMNS)} FROM audit_event ORDER BY seq").fetchall()
    finally:
        db.close()
    return [AuditRecord(seq=row[0], prev_hash=row[1], hash=row[2], body=row[3],
                        columns=dict(zip(_COLUMNS, row[4:], strict=True))) for row in rows]
