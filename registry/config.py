"""Settings of the registry service (``REGISTRY_*`` environment variables or keyword arguments)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["INS_OIDS", "RegistrySettings"]

INS_OIDS: tuple[str, ...] = (
    "1.2.250.1.213.1.4.8",  # INS-NIR
    "1.2.250.1.213.1.4.9",  # INS-NIA
    "1.2.250.1.213.1.4.10",  # INS-NIR, test identities
    "1.2.250.1.213.1.4.11",  # INS-NIR, demonstration identities
)
"""Assigning authorities of the INS (DESIGN §3); production keeps only the first two."""

_ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_OID = r"^[0-2](\.(0|[1-9][0-9]*))+$"
_MiB = 1024 * 1024


class RegistrySettings(BaseSettings):
    """Where the registry keeps its index and documents, and whom it trusts.

    Without ``trusted_ca_file`` every SOAP call is refused (no VIHF can be verified); without the
    ``token_*`` keys every FHIR call is refused. There is no unauthenticated mode.
    """

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", env_nested_delimiter="__", extra="forbid", frozen=True)

    data_dir: Path = Path("./registry-data")
    database_url: str | None = None
    """SQLAlchemy URL; defaults to SQLite in ``data_dir`` (PostgreSQL in production)."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8090

    trusted_ca_file: Path | None = None
    """PEM bundle of the CAs (roots or intermediates) whose certificates may sign VIHF assertions and
    DSG signatures (the IGC-Santé organisation CAs in production, the demo CA here)."""
    token_issuer: str | None = None
    """``iss`` of the bearer JWTs accepted on the FHIR (MHD) endpoints."""
    token_audience: str | None = None
    """``aud`` those tokens must carry."""
    token_public_key_file: Path | None = None
    """PEM public key (or certificate) of the token issuer."""
    token_algorithms: tuple[str, ...] = ("ES256", "ES384", "RS256", "PS256")
    """Accepted JWS algorithms: asymmetric only (``none`` and HMAC are refused at start)."""
    token_leeway_s: Annotated[int, Field(ge=0, le=600)] = 30

    repository_unique_id: Annotated[str, Field(pattern=_OID, max_length=64)] = (
        "2.25.201455476346145095133860257821455938272"
    )
    """``repositoryUniqueId`` of the integrated repository (ITI-41 stamps it, ITI-43 checks it)."""
    home_community_id: Annotated[str, Field(pattern=r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")] = (
        "urn:oid:2.25.296963007893593544622328498936356435282"
    )
    """``home`` attribute of the objects returned by ITI-18."""
    accepted_ins_oids: tuple[str, ...] = INS_OIDS
    """INS assigning authorities accepted in patient ids."""

    max_query_results: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """ITI-18: more matches than this is ``XDSTooManyResults``; also the largest MHD page."""
    max_request_bytes: Annotated[int, Field(ge=1024)] = 64 * _MiB
    """Largest SOAP request (envelope and attachments); beyond it a SOAP fault, HTTP 413."""
    vihf_max_age_s: Annotated[int, Field(ge=60)] = 12 * 3600
    """A VIHF assertion issued longer ago than this is refused (replay bound)."""
    clock_skew_s: Annotated[int, Field(ge=0, le=3600)] = 300
    """Tolerance on timestamps from other clocks (assertion issue instants, token ``iat``)."""
    public_url: str | None = None
    """Base URL clients see (``attachment.url`` of MHD); derived from each request when unset."""

    @field_validator("token_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(set(value) - _ASYMMETRIC_ALGORITHMS)
        if bad:
            raise ValueError(f"not allowed: {', '.join(bad)} (asymmetric algorithms only)")
        return value

    @field_validator("accepted_ins_oids")
    @classmethod
    def _known_ins_oids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(INS_OIDS))
        if unknown or not value:
            raise ValueError(f"INS OIDs are {', '.join(INS_OIDS)}; got {', '.join(unknown) or 'none'}")
        return value

    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'registry.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        """Where document bytes live (content-addressed files)."""
        return self.data_dir / "documents"
