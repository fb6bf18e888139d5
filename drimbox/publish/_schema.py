"""SQLite schema of the outbox (one file, WAL journal, ``synchronous=FULL``)."""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "connect", "create_schema"]

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_key        TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    exam_key       TEXT NOT NULL,
    study_uid      TEXT NOT NULL,
    accession      TEXT NOT NULL,
    report_version INTEGER,
    report         TEXT,
    detail         TEXT,
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    not_before     REAL NOT NULL,
    lease_owner    TEXT,
    lease_until    REAL,
    revision       INTEGER,
    last_error     TEXT,
    outcome        TEXT,
    created        REAL NOT NULL,
    updated        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, not_before);
CREATE INDEX IF NOT EXISTS jobs_exam ON jobs (exam_key, id);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_uid);

-- The prepared ITI-41 request of a job: stored before the first send and reused byte for byte by
-- every retry, so that a resend after a crash is the same submission (same uniqueIds, same hashes).
CREATE TABLE IF NOT EXISTS submissions (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    kos_uid        TEXT NOT NULL UNIQUE,
    entry_uuid     TEXT NOT NULL,
    submission_uid TEXT NOT NULL,
    patient_id     TEXT NOT NULL,
    replaces       TEXT,
    instances      TEXT NOT NULL,
    report_version INTEGER NOT NULL,
    metadata       BLOB NOT NULL,
    created        REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS documents (
    job_id    INTEGER NOT NULL REFERENCES jobs (id),
    doc_id    TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    content   BLOB NOT NULL,
    PRIMARY KEY (job_id, doc_id)
);

-- What happened to a job, step by step (for the operator and for restart decisions).
CREATE TABLE IF NOT EXISTS steps (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs (id),
    at      REAL NOT NULL,
    step    TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_job ON steps (job_id, id);

-- One row per exam: the KOS revision counter, the latest report received, what is published.
CREATE TABLE IF NOT EXISTS exams (
    exam_key          TEXT PRIMARY KEY,
    study_uid         TEXT NOT NULL,
    accession         TEXT NOT NULL,
    revision          INTEGER NOT NULL DEFAULT 0,
    report_job        INTEGER REFERENCES jobs (id),
    report_version    INTEGER,
    published_job     INTEGER REFERENCES jobs (id),
    withdrawn         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS exams_study ON exams (study_uid);
"""


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with durable settings.

    WAL lets ``drimbox outbox`` read while the node writes; ``synchronous=FULL`` makes every commit
    fsync the WAL, so a committed job survives a power cut, not only a process crash (with NORMAL,
    the last commits may be lost on power failure — and the RIS would already have its ACK).
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if needed and check the schema version."""
    conn.executescript(_DDL)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) != SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"outbox schema version {row[0]}, this node needs {SCHEMA_VERSION}")
