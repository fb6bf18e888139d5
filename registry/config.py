"""Settings of the registry service (``REGISTRY_*`` environment variables or keyword arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RegistrySettings"]


class RegistrySettings(BaseSettings):
    """Where the registry keeps its index and its documents."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Path("./registry-data")
    database_url: str | None = None
    """SQLAlchemy URL; defaults to SQLite in ``data_dir`` (PostgreSQL in production)."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8090

    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'registry.sqlite3').resolve()}"
