"""Alembic environment: runs on the connection the caller passes in ``config.attributes``.

The registry never reads ``alembic.ini`` or a URL from here: :func:`registry.store.migrate.upgrade_to_head`
hands over an open connection, so tests and the service migrate exactly the engine they use.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from registry.store.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):  # pragma: no cover - only by misuse
    raise RuntimeError("registry migrations run through registry.store.migrate with an open connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
