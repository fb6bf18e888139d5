"""Typed node settings, read from a TOML file and ``DRIMBOX_*`` environment variables.

Settings are built once by :func:`load_settings` and passed to whatever needs them (no import-time
global). Environment variables override the file; nested keys use ``__`` (``DRIMBOX_PACS__PORT=4242``).
Every validation failure becomes a :class:`~drimbox.errors.ConfigError` whose message names the key,
e.g. ``pacs.port: Input should be less than or equal to 65535``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from drimbox.errors import ConfigError

__all__ = [
    "AuthSettings",
    "DicomwebSettings",
    "DimseSettings",
    "Hl7Settings",
    "HttpSettings",
    "LocalAE",
    "NodeSettings",
    "RegistryClientSettings",
    "RemoteAE",
    "StorageSettings",
    "TlsSettings",
    "load_settings",
]

Port = Annotated[int, Field(ge=1, le=65535)]


def _check_aet(value: str) -> str:
    if not 1 <= len(value) <= 16 or not value.strip(" "):
        raise ValueError("an AE title has 1 to 16 characters and is not all spaces")
    if any(not 0x20 <= ord(ch) <= 0x7E or ch == "\\" for ch in value):
        raise ValueError("an AE title has printable ASCII characters only, no backslash")
    return value


AETitle = Annotated[str, AfterValidator(_check_aet)]
"""An AE title: 1-16 characters of the DICOM default repertoire, no backslash, not all spaces."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteAE(_Strict):
    """A DICOM peer the node talks to as an SCU (the site's PACS)."""

    aet: AETitle
    host: Annotated[str, Field(min_length=1)]
    port: Port
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """DIMSE timeout: the longest wait for any one response message."""
    supports_c_get: bool = True
    """Retrieve with C-GET (one association, no inbound connection); otherwise C-MOVE to the node's SCP."""
    rest_url: str | None = None
    """Base URL of the PACS's own REST/DICOMweb API (fast path, used by the DICOMweb gateway)."""


class LocalAE(_Strict):
    """The node's own DIMSE service (SCU calling AE title and the SCP's listening address)."""

    aet: AETitle = "DRIMBOX"
    host: str = "127.0.0.1"
    port: Port = 11112


class DimseSettings(_Strict):
    """Association-level limits and timeouts of the node's DICOM networking."""

    acse_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    network_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    max_pdu: Annotated[int, Field(ge=0, le=2**32 - 1)] = 262_144
    """Largest PDU the node accepts (0 = unlimited); large PDUs cut per-PDU overhead on big images."""
    pool_size: Annotated[int, Field(ge=0, le=64)] = 4
    """Idle query associations kept open per peer for reuse (0 disables pooling)."""
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 32
    """Concurrent associations the node's SCP accepts."""
    move_quarantine_s: Annotated[float, Field(gt=0, le=86400)] = 60.0
    """How long a C-MOVE waits for stragglers after the final response before giving up on them."""


class HttpSettings(_Strict):
    """The node's HTTP faces: site-facing (plain, loopback/site LAN) and network-facing (mutual TLS)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    network_host: str = "127.0.0.1"
    network_port: Port = 8443
    public_network_url: str | None = None
    """Base URL peers use to reach the network face (RetrieveURLs point here); derived when absent."""


class TlsSettings(_Strict):
    """Certificates of the node (server and client of node-to-node mutual TLS)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class AuthSettings(_Strict):
    """How bearer tokens are verified (issue #7 adds OIDC discovery and introspection)."""

    issuer: str = ""
    audience: str = "drimbox"
    public_key_file: Path | None = None
    """PEM public key (or certificate) of the token issuer."""
    algorithms: tuple[str, ...] = ("ES256", "RS256")
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    dev_mode: bool = False
    """Accept any request as a fixed developer identity. Loud in the logs; refused together with TLS."""


class Hl7Settings(_Strict):
    """The MLLP listener that receives reports from the RIS."""

    host: str = "127.0.0.1"
    port: Port = 2575


class RegistryClientSettings(_Strict):
    """Where the national registry (XDS.b) is."""

    base_url: str | None = None


class StorageSettings(_Strict):
    """Directories the node writes to."""

    data_dir: Path = Path("./drimbox-data")

    @property
    def incoming_dir(self) -> Path:
        """Where retrieved instances land, one file per SOP instance."""
        return self.data_dir / "incoming"

    @property
    def quarantine_dir(self) -> Path:
        """Where C-STOREs that match no pending request are kept for an operator."""
        return self.data_dir / "quarantine"


_GiB = 1024**3


class DicomwebSettings(_Strict):
    """The node's DICOMweb gateway: which path to the PACS, the node cache, limits.

    Directories default to ``storage.data_dir`` sub-directories (see :class:`NodeSettings`).
    """

    backend: Literal["auto", "dimse", "orthanc"] = "auto"
    """``orthanc``: Orthanc's REST API at ``pacs.rest_url`` (fast path); ``dimse``: C-FIND/C-GET/
    C-MOVE/C-STORE, any PACS; ``auto``: ``orthanc`` when ``pacs.rest_url`` is set, else ``dimse``."""
    cache_dir: Path | None = None
    """The node cache (retrieved studies served again from disk); default ``<data_dir>/dicomweb-cache``."""
    cache_max_bytes: Annotated[int, Field(ge=0)] = 50 * _GiB
    """Size bound of the cache (least recently used instances are evicted beyond); 0 = unbounded."""
    cache_revalidate_s: Annotated[float, Field(ge=0)] = 3600.0
    """Age after which a cached study is checked against the PACS's instance list before serving."""
    spool_dir: Path | None = None
    """Transient files: instances on their way from the PACS, STOW parts; default ``<data_dir>/dicomweb-spool``."""
    max_results: Annotated[int, Field(ge=1, le=1000)] = 1000
    """QIDO: the largest page (and the default ``limit``)."""
    max_stow_bytes: Annotated[int, Field(ge=1)] = 4 * _GiB
    """STOW: the largest request body (413 beyond)."""
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 5
    """``Retry-After`` of a 503 when the PACS is unreachable."""
    parallel_downloads: Annotated[int, Field(ge=1, le=8)] = 2
    """Fast path: instance files downloaded ahead while the previous one is being sent."""
    public_url: str | None = None
    """Site face DICOMweb root as clients see it (for RetrieveURL/BulkDataURI); derived per request if unset."""


class NodeSettings(BaseSettings):
    """All settings of one node (one site)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIMBOX_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "site"
    local: LocalAE = LocalAE()
    pacs: RemoteAE
    dimse: DimseSettings = DimseSettings()
    http: HttpSettings = HttpSettings()
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()
    hl7: Hl7Settings = Hl7Settings()
    registry: RegistryClientSettings = RegistryClientSettings()
    storage: StorageSettings = StorageSettings()
    dicomweb: DicomwebSettings = DicomwebSettings()
    log_format: Literal["console", "json"] = "console"

    @field_validator("pacs", mode="before")
    @classmethod
    def _pacs_is_a_table(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a [pacs] table with aet, host and port is required")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which load_settings passes as init values.
        return env_settings, init_settings


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def load_settings(path: Path | None = None, **overrides: Any) -> NodeSettings:
    """Read the node settings from ``path`` (TOML) and the environment.

    Raises
    ------
    ConfigError
        When the file cannot be read or parsed, or a value is missing or invalid. The message is
        one line and starts with the offending key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    data.update(overrides)
    try:
        return NodeSettings(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _key_of(first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{key}: {first['msg']}{more}", key=key) from exc
