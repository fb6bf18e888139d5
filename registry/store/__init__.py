"""Persistence: SQLAlchemy models and queries, Alembic migrations, the document blob store."""
