"""Alembic migrations of the registry index (``upgrade head`` runs at start, see ``registry.store.migrate``)."""
