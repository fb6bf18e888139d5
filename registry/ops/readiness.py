"""Readiness of the registry: its database answers and its document store takes writes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from registry.context import RegistryContext

__all__ = ["Readiness", "check_readiness"]


@dataclass(frozen=True)
class Readiness:
    """Each check's result: ``ok`` or why not."""

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(result == "ok" for result in self.checks.values())


def _database(ctx: RegistryContext) -> str:
    try:
        with ctx.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        first_line = next(iter(str(exc).splitlines()), "")
        return f"unreachable: {type(exc).__name__}" + (f": {first_line}" if first_line else "")
    return "ok"


def _blob_store(ctx: RegistryContext) -> str:
    try:
        ctx.blobs.probe()
    except OSError as exc:
        return f"not writable: {exc.strerror or type(exc).__name__} ({exc.filename or ''})"
    return "ok"


def check_readiness(ctx: RegistryContext) -> Readiness:
    """Run every check (each bounded by the driver's and the file system's own timeouts)."""
    return Readiness({"database": _database(ctx), "blob_store": _blob_store(ctx)})
