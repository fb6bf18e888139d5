"""Schema migrations: ``alembic upgrade head`` on the registry's own engine, at start.

The scripts live in the ``registry.migrations`` package (no ``alembic.ini``); the environment runs on
the connection passed here, so the service, the tests and the benchmark migrate the engine they use.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from registry.store.models import Base

__all__ = ["MIGRATIONS_DIR", "alembic_config", "schema_drift", "upgrade_to", "upgrade_to_head"]

_PARTITION = re.compile(r"(.+)_p[0-9]{2}")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema of ``engine``'s database to the newest revision (idempotent)."""
    upgrade_to(engine, "head")


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring the schema of ``engine``'s database to ``revision`` (tests of an upgrade start from an old one)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_drift(connection: Connection) -> list[Any]:
    """Differences between the migrated schema and the models (empty when they agree).

    A model constraint whose ``info["dialects"]`` does not name this connection's dialect (the
    SQLite-only row keys of :mod:`registry.store.models`) is left out of the comparison, and so are
    the hash partitions of a partitioned table (their parent is compared).
    """
    dialect = connection.dialect.name

    def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        partition = _PARTITION.fullmatch(name or "") if kind == "table" and reflected and compare_to is None else None
        if partition:
            return partition.group(1) not in Base.metadata.tables
        if kind == "foreign_key_constraint" and reflected and _PARTITION.fullmatch(obj.referred_table.name):
            return False  # PostgreSQL's per-partition copies of a partitioned table's foreign key
        dialects = getattr(obj, "info", {}).get("dialects")
        return dialects is None or dialect in dialects

    context = MigrationContext.configure(connection, opts={"include_object": include})
    return list(compare_metadata(context, Base.metadata))
