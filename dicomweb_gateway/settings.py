"""Typed gateway settings, read from ``DICOMWEB_*`` environment variables or built by the mounter.

The node builds one :class:`GatewaySettings` from its own configuration and passes it to
:func:`dicomweb_gateway.app.create_dicomweb_router`; nothing here is an import-time global.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GatewaySettings"]

_MiB = 1024 * 1024


class GatewaySettings(BaseSettings):
    """Limits and choices of the DICOMweb gateway (one instance per mounted router)."""

    model_config = SettingsConfigDict(env_prefix="DICOMWEB_", frozen=True, extra="forbid")

    max_results: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """QIDO: the most results one response carries; also the limit when the client sets none
    (PS3.18 §8.3.4.4: the lesser of the matches and the server's maximum)."""

    bulk_data_threshold: Annotated[int, Field(ge=0)] = 1024
    """Metadata: binary values (OB, OW, OF, OD, OL, OV, UN) longer than this many bytes become a
    ``BulkDataURI`` instead of ``InlineBinary``."""

    max_stow_bytes: Annotated[int, Field(ge=1)] = 4 * 1024 * _MiB
    """STOW: the largest request body accepted (413 beyond)."""

    max_stow_parts: Annotated[int, Field(ge=1)] = 10_000
    """STOW: the most parts (instances) one request may carry."""

    spool_dir: Path | None = None
    """Where STOW parts are spooled while parsing; ``None`` uses the system temp directory."""

    chunk_bytes: Annotated[int, Field(ge=4096)] = 1 * _MiB
    """Size of the reads when streaming files into a response."""

    encode_compressed: bool = True
    """WADO: deliver uncompressed stored data in a *lossless* compressed syntax (RLE, JPEG-LS
    Lossless, JPEG 2000 Lossless) when the client prefers one and an encoder is installed. Off,
    such data goes out as stored or as Explicit VR Little Endian only (saves CPU, costs bandwidth)."""

    rendered_quality: Annotated[int, Field(ge=1, le=100)] = 90
    """Default JPEG quality of ``/rendered`` when the request sets none."""

    thumbnail_size: Annotated[int, Field(ge=16, le=1024)] = 128
    """Longest side of ``/thumbnail`` images when no ``viewport`` is given."""

    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 5
    """``Retry-After`` sent with 503 when the backend gives no value."""

    public_base_url: str | None = None
    """Base URL of the DICOMweb root as clients see it (``https://node.example/dicom-web``), for
    ``RetrieveURL`` and ``BulkDataURI``; ``None`` derives it from each request."""
