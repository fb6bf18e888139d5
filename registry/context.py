"""Everything a transaction needs, built once per app from the settings and injected into routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from registry.config import RegistrySettings
from registry.ops.metrics import RegistryMetrics
from registry.security.bearer import TokenVerifier, load_public_key
from registry.security.xmldsig import TrustStore
from registry.store.blobs import BlobStore, FileBlobStore
from registry.store.db import Database
from registry.xds.validation import ValidationContext

__all__ = ["RegistryContext", "utc_now"]


def utc_now() -> datetime:
    """The current UTC instant."""
    return datetime.now(UTC)


@dataclass
class RegistryContext:
    """The registry's collaborators: settings, index, document store, trust anchors, token verifier, metrics."""

    settings: RegistrySettings
    database: Database
    blobs: BlobStore
    trust: TrustStore
    tokens: TokenVerifier
    clock: Callable[[], datetime] = field(default=utc_now)
    metrics: RegistryMetrics = field(default_factory=RegistryMetrics)

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryContext:
        """Open the database and blob store and load the trust material the settings name."""
        trust = TrustStore.from_pem_file(settings.trusted_ca_file) if settings.trusted_ca_file else TrustStore([])
        key = load_public_key(settings.token_public_key_file) if settings.token_public_key_file else None
        tokens = TokenVerifier(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            public_key=key,
            algorithms=settings.token_algorithms,
            leeway_s=settings.token_leeway_s,
        )
        return cls(
            settings=settings,
            database=Database.from_url(settings.effective_database_url()),
            blobs=FileBlobStore(settings.blob_dir),
            trust=trust,
            tokens=tokens,
        )

    @property
    def validation(self) -> ValidationContext:
        """What metadata validation depends on."""
        return ValidationContext(
            accepted_ins_oids=self.settings.accepted_ins_oids,
            repository_unique_id=self.settings.repository_unique_id,
        )
