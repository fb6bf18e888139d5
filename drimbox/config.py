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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    "OidcSettings",
    "OperationsSettings",
    "PeerLimitSettings",
    "PeerSettings",
    "RetrieveSettings",
    "ViewerSettings",
    "PublishSettings",
    "RegistryClientSettings",
    "RemoteAE",
    "ScreeningReader",
    "ScreeningSettings",
    "StorageSettings",
    "TlsSettings",
    "TrustListSettings",
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
    """The node's AE title (calling AE of its SCU, called AE of its SCP)."""
    host: str = "127.0.0.1"
    """Address the SCP listens on."""
    port: Port = 11112
    """Port the SCP listens on (declare it in the PACS for C-MOVE)."""


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
    """How bearer tokens are verified: signed JWTs (issuer key or OIDC discovery + JWKS) or RFC 7662 introspection."""

    issuer: str = ""
    audience: str = "drimbox"
    mode: Literal["jwt", "introspection"] = "jwt"
    """``jwt``: verify the signature locally; ``introspection``: ask the provider (RFC 7662) about each token."""
    public_key_file: Path | None = None
    """PEM public key (or certificate) of the token issuer; without it the keys come from the issuer's JWKS."""
    jwks_url: str | None = None
    """JWKS of the issuer; default: the ``jwks_uri`` of ``{issuer}/.well-known/openid-configuration``."""
    algorithms: tuple[str, ...] = ("ES256", "RS256")
    leeway_s: Annotated[int, Field(ge=0, le=300)] = 30
    required_acr: str | None = None
    """Authentication level a user's token must reach (e.g. ``eidas1``); absent: not checked."""
    introspection_url: str | None = None
    """RFC 7662 endpoint; default: the ``introspection_endpoint`` announced by discovery."""
    introspection_client_id: str = ""
    introspection_cert_file: Path | None = None
    """Client certificate for RFC 8705 ``tls_client_auth`` at the introspection endpoint (with the key file)."""
    introspection_key_file: Path | None = None
    introspection_ca_file: Path | None = None
    """CA bundle the provider's TLS certificate must chain to (default: the system's)."""
    introspection_secret_file: Path | None = None
    """Client secret (``client_secret_basic``) when mutual TLS is not used."""
    introspection_cache_s: Annotated[float, Field(ge=0, le=60)] = 60.0
    """How long an introspection answer is reused; at most 60 s, so a revoked token is refused soon after."""
    node_bound_tokens: bool = True
    """Network face: accept a token only if it was issued to a client of the trust-listed node presenting it."""
    dev_mode: bool = False
    """Accept any request as a fixed developer identity. Loud in the logs; refused together with TLS."""


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (IANA name expected, e.g. Europe/Paris)") from exc
    return value


class Hl7Settings(_Strict):
    """The MLLP listener that receives reports from the RIS."""

    host: str = "127.0.0.1"
    port: Port = 2575
    max_message_bytes: Annotated[int, Field(ge=1024, le=2**31)] = 32 * 1024 * 1024
    """Largest message accepted (a CDA with its PDF is typically 0.3-3 MB); larger frames get AR."""
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    """Concurrent MLLP connections; more are closed at once (a RIS uses one or two)."""
    idle_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 900.0
    """A connection with no frame started for this long is closed (the RIS reconnects)."""
    frame_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Longest time to receive one frame once started; then it is answered AR if possible and closed."""
    shutdown_grace_s: Annotated[float, Field(ge=0, le=600)] = 10.0
    """On stop, how long messages being processed may take to get their ACK."""
    application: Annotated[str, Field(min_length=1, max_length=180)] = "DRIMBOX"
    """MSH-3 of ACKs when the message's MSH-5 (receiving application) is empty."""
    facility: str = ""
    """MSH-4 of ACKs when the message's MSH-6 (receiving facility) is empty."""
    timezone: Annotated[str, AfterValidator(_check_zone)] = "Europe/Paris"
    """Zone of CDA/HL7 timestamps that carry no UTC offset (an overseas site sets its own)."""


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


class CodeSetting(_Strict):
    """A coded value for XDS metadata: code, coding scheme (OID), display name."""

    code: Annotated[str, Field(min_length=1)]
    scheme: Annotated[str, Field(min_length=1)]
    display: str = ""


class PublishSettings(_Strict):
    """KOS publication to the national registry (XDS.b, DESIGN F3/F4): outbox, endpoints, identity, codes.

    Coded defaults follow the ANS validator samples; a site sets its own facility type and practice
    setting. Values taken from the CDA header (practice setting, facility type) win over these.
    """

    enabled: bool = True
    """Run the outbox worker in the node (the MLLP listener queues either way)."""
    outbox_path: Path | None = None
    """The outbox SQLite file; default ``<data_dir>/outbox.sqlite3``."""
    workers: Annotated[int, Field(ge=1, le=16)] = 2
    """Jobs of different exams published in parallel (one exam's jobs never run together)."""
    lease_s: Annotated[float, Field(gt=0, le=86400)] = 300.0
    """How long a worker holds a job without progress before another may take it."""
    poll_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    retry_base_s: Annotated[float, Field(gt=0, le=86400)] = 5.0
    """First retry delay of a transient failure (then doubled, with jitter)."""
    retry_max_s: Annotated[float, Field(gt=0, le=86400)] = 3600.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 30
    """Runs before a transiently failing job goes to the dead-letter list."""
    registry_url: str | None = None
    """Document Registry (ITI-18, ITI-57); default ``<registry.base_url>/xds/registry``."""
    repository_url: str | None = None
    """Document Repository (ITI-41, ITI-43); default ``<registry.base_url>/xds/repository``."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    organisation_id: str = ""
    """The structure's IdNatStruct (``1`` + FINESS, ``3`` + SIRET): VIHF ``Identifiant_Structure`` and the
    fallback authorInstitution."""
    organisation_name: str = ""
    source_id: Annotated[str | None, Field(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$")] = None
    """OID of this node as a document source (``XDSSubmissionSet.sourceId``); default derived from its name."""
    signing_cert_file: Path | None = None
    """Organisation certificate signing the VIHF assertion and the DSG document; default ``tls.cert_file``."""
    signing_key_file: Path | None = None
    """Its private key; default ``tls.key_file``."""
    lps_id: str = "DRIMBOX"
    lps_name: str = "drimbox"
    lps_version: str = "0.1.0"
    lps_homologation_id: Annotated[str, Field(min_length=1)] = "NON-HOMOLOGUE"
    """``LPS_ID_HOMOLOGATION_DMP`` given by the ANS when the software is homologated (until then, a placeholder)."""
    activity_sector: CodeSetting = CodeSetting(code="SA07", scheme="1.2.250.1.71.4.2.4",
                                               display="Cabinet individuel")
    """VIHF ``Secteur_Activite`` (TRE_A02-SecteurActivite)."""
    healthcare_facility_type: CodeSetting = CodeSetting(code="SA07", scheme="1.2.250.1.71.4.2.4",
                                                        display="Cabinet individuel")
    practice_setting: CodeSetting = CodeSetting(code="AMBULATOIRE", scheme="1.2.250.1.213.1.1.4.9",
                                                display="Ambulatoire")
    content_type: CodeSetting = CodeSetting(code="04", scheme="1.2.250.1.213.2.2", display="Hospitalisation de jour")
    """Submission set contentTypeCode (the ANS sample's value; set the site's own)."""
    author_role: CodeSetting = CodeSetting(code="10", scheme="1.2.250.1.71.1.2.7", display="Médecin")
    """Profession of the report's author (VIHF role, authorRole)."""
    author_specialty: CodeSetting = CodeSetting(code="SM44", scheme="1.2.250.1.71.4.2.5",
                                                display="Radio-diagnostic et imagerie médicale (SM)")
    modality_scheme: str = "1.2.250.1.213.1.1.5.618"
    """Coding scheme of modality event codes (the ANS sample's)."""
    region_scheme: str = "1.2.250.1.213.1.1.5.695"
    """Coding scheme of anatomic region event codes (SNOMED CT concepts; the ANS cross-validation sample's)."""
    accession_issuer: str | None = None
    """Issuer (OID) of accession numbers when the report gives none."""
    timezone: str = "Europe/Paris"
    """The site's zone: DICOM dates and times are its local wall clock (overseas sites set theirs)."""
    publish_cda: bool = False
    """Also publish the CDA report as a second document entry of the same submission."""
    cda_class_code: CodeSetting = CodeSetting(code="10", scheme="1.2.250.1.213.1.1.4.1", display="Compte rendu")
    cda_format_code: CodeSetting = CodeSetting(code="urn:asip:ci-sis:cr-img:2016", scheme="1.2.250.1.213.1.1.4.2.282",
                                               display="CR d'imagerie médicale")
    iocm_poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    """How often the quarantine is scanned for IOCM rejection notes C-STOREd by the PACS."""
    refresh_after_s: tuple[float, ...] = ()
    """After a publication, walk the PACS again after these delays and republish (RPLC) if images came later."""
    crash_point: Literal["before-commit", "before-ack", "after-send", "after-deprecate", "before-done"] | None = None
    """TESTS ONLY: die (``os._exit``) at this point of the publication path (crash-safety acceptance)."""
    crash_after: Annotated[int, Field(ge=1)] = 1
    """TESTS ONLY: die the n-th time the crash point is reached."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (IANA name expected, e.g. Indian/Reunion)") from exc
        return value


class OidcSettings(_Strict):
    """Browser login of the site's users through the configured OpenID Connect provider (F5, F9).

    The node is a confidential client using the authorization code flow with PKCE; the access token
    it receives is the user's bearer token, forwarded to source nodes on retrieval (F7).
    """

    issuer: str | None = None
    """The provider's issuer URL (discovery at ``{issuer}/.well-known/openid-configuration``);
    unset = no browser login."""
    client_id: str = ""
    client_secret_file: Path | None = None
    """File holding the client secret (kept out of the settings file)."""
    scopes: tuple[str, ...] = ("openid", "profile")
    public_url: str | None = None
    """The site face's base URL as browsers reach it (redirect URI ``{public_url}/auth/callback``);
    default: derived per request."""
    session_ttl_s: Annotated[float, Field(gt=0, le=86400)] = 8 * 3600.0
    """Lifetime of a browser session (never beyond the access token's expiry)."""


class PeerSettings(_Strict):
    """Which remote nodes this node talks to (F7). The signed national trust list (F11) supersedes
    ``hosts`` once configured (trust issue); until then the list is static."""

    hosts: tuple[str, ...] = ()
    """Hosts (name or IP, as in RetrieveURLs) of trust-listed nodes; a RetrieveURL elsewhere is not followed."""
    source_address: str | None = None
    """Local address node-to-node connections are made from (a multihomed host, or the demo's sites sharing
    one loopback): peers identify this node by the address it connects from."""
    clients: dict[str, tuple[str, ...]] = {}
    """OIDC client ids of each peer node, keyed by its ``db`` host (or trust-list ``Identifiant``): the
    network face accepts a token only from the node its client belongs to (``auth.node_bound_tokens``)."""


class TrustListSettings(_Strict):
    """The signed national trust list (F11): where it comes from and who may sign it.

    When ``url`` or ``file`` is set, the list's ``db`` hosts are the trusted peers (it supersedes
    ``[peers] hosts``). A new list that fails verification is refused and the last good one stays.
    """

    url: str | None = None
    """HTTPS URL of the signed list (the registry's ``/whitelist``, or the ANS publication)."""
    file: Path | None = None
    """A local copy of the signed list, verified and loaded at start (before the first fetch)."""
    refresh_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 86400.0
    """Interval between two fetches of ``url`` (daily by default)."""
    ca_files: tuple[Path, ...] = ()
    """PEM files of the CAs the signer must chain to (IGC-Santé roots in production)."""
    crl_files: tuple[Path, ...] = ()
    """Local CRLs (PEM or DER) checked for the signer and its intermediates."""
    signer_cn: str = "Liste Blanche DRIM-M"
    """Required CN of the signing certificate."""
    signer_ou: str | None = "318751275100020"
    """Required OU of the signing certificate (``None``: not checked)."""


class RetrieveSettings(_Strict):
    """The consumer side: retrieval from source nodes (F7), import into the local PACS (F8)."""

    parallel_series: Annotated[int, Field(ge=1, le=16)] = 3
    """Series retrieved at the same time from source nodes."""
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Connect/read timeout of one request to a source node."""
    attempts: Annotated[int, Field(ge=1, le=100)] = 5
    """Attempts per series after a network failure (each resumes where the last stopped)."""
    work_dir: Path | None = None
    """Where retrieved studies are kept until imported or expired; default ``<data_dir>/retrieved``."""
    retention_s: Annotated[float, Field(gt=0)] = 7 * 86400.0
    """Retrieved (and viewer-cached) remote studies are dropped after this time, or sooner when the
    registry shows their KOS deprecated."""
    identity_rule: Literal["ins", "local"] = "local"
    """How imported instances identify the patient in the local PACS: ``ins`` (PatientID = INS) or
    ``local`` (PatientID = the local IPP given by the contextual call, INS kept in OtherPatientIDsSequence)."""
    local_issuer: str = ""
    """IssuerOfPatientID of the local IPP (``identity_rule = "local"``)."""
    import_via: Literal["dimse", "stow"] = "dimse"
    """Import with C-STORE (default) or STOW-RS at ``import_stow_url``."""
    import_stow_url: str | None = None
    ins_oids: tuple[str, ...] = ("1.2.250.1.213.1.4.8",)
    """INS namespaces tried when a workstation's C-FIND gives a PatientID without its OID (NIR by
    default; a test network adds ``1.2.250.1.213.1.4.10``)."""
    commitment_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """How long to wait for the PACS's Storage Commitment N-EVENT-REPORT before reporting the import unconfirmed."""


class ViewerSettings(_Strict):
    """The OHIF viewer the site face serves (F9)."""

    ohif_dist: Path | None = None
    """The prebuilt ``dist/`` of the npm package ``@ohif/app``; default: the copy the setup command installed."""
    language: Literal["fr", "en"] = "fr"
    """Default language of the node's pages (a user may switch)."""


class ScreeningReader(_Strict):
    """A second reader (L2) of the screening programme and the node they read on."""

    rpps: Annotated[str, Field(pattern=r"^[0-9]{11}$")]
    node: Annotated[str, Field(pattern=r"^https://")]
    """Base URL of the reader's node network face (mutual TLS), e.g. ``https://site-b:8443``."""
    name: str = ""


class ScreeningSettings(_Strict):
    """Organised breast-cancer screening second reads over the network (``drimbox.screening``).

    A PILOT UNDER DEROGATION: the arrêté of 16 January 2024 allows dematerialised second reading only as
    an experiment, so the feature is off unless a programme switches it on (``enabled``).
    """

    enabled: bool = False
    """Switch the pilot on (worklist, API, pages, node-to-node messages)."""
    programme: bool = False
    """This node plays the programme's role (CRCDC): it takes requests, assigns them, keeps the dashboard."""
    programme_url: str | None = None
    """Network face of the programme's node (readers and L1 sites send status and results there);
    default, on the programme's own node: its ``http.public_network_url``."""
    readers: tuple[ScreeningReader, ...] = ()
    """Programme role: the programme's L2 readers (``[[screening.readers]]``: rpps, node, name)."""
    max_priors: Annotated[int, Field(ge=0, le=10)] = 2
    """Prior screening exams prefetched for the reader (most recent first)."""
    label: str = "Pilote sous dérogation (arrêté du 16 janvier 2024) — seconde lecture dématérialisée"
    """Shown on every screening page and API answer: this is an experiment under derogation."""


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


class OperationsSettings(_Strict):
    """Readiness, monitoring, usage KPIs and shutdown of the node process (``drimbox.ops``)."""

    outbox_stuck_s: Annotated[float, Field(gt=0)] = 3600.0
    """``/readyz`` fails when a publication job has been due this long without a worker taking it, or
    an in-flight job has made no progress for longer than its lease."""
    readiness_cache_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    """How long a readiness answer is reused (a probe polling every second does not C-ECHO the PACS each time)."""
    probe_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    """Longest wait of one readiness check (C-ECHO, registry request)."""
    trust_list_max_age_s: Annotated[float | None, Field(gt=0)] = None
    """The trust list is stale when no fetch has succeeded for this long; default twice ``trust_list.refresh_s``."""
    certificate_warning_days: Annotated[float, Field(ge=0, le=365)] = 30.0
    """A certificate expiring within this many days is logged as a warning (expired: ``/readyz`` fails)."""
    kpi_dir: Path | None = None
    """Where the daily usage KPI files go; default ``<data_dir>/kpi``."""
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """On SIGTERM, how long HTTP requests in progress (retrievals) may take to finish before they are cut."""


class PeerLimitSettings(_Strict):
    """Caps per peer node, on the network face (inbound) and on the consumer's retrievals (outbound)."""

    max_concurrent_requests: Annotated[int, Field(ge=0, le=10_000)] = 32
    """Requests one peer may have in progress on the network face (0 = unlimited); beyond: 429."""
    max_total_requests: Annotated[int, Field(ge=0, le=100_000)] = 128
    """Requests in progress on the network face from all peers together (0 = unlimited); beyond: 503."""
    max_bytes_per_s: Annotated[int, Field(ge=0)] = 0
    """Bandwidth served to one peer (bytes/s, 0 = unlimited): responses are paced, never cut."""
    retry_after_s: Annotated[int, Field(ge=1, le=3600)] = 2
    """``Retry-After`` of a 429/503 refusal."""
    outbound_max_concurrent: Annotated[int, Field(ge=0, le=1000)] = 8
    """Requests the consumer side sends to one source node at once, all retrievals together (0 = unlimited)."""
    outbound_max_bytes_per_s: Annotated[int, Field(ge=0)] = 0
    """Bandwidth the consumer side takes from one source node (bytes/s, 0 = unlimited)."""


class NodeSettings(BaseSettings):
    """All settings of one node (one site)."""

    model_config = SettingsConfigDict(
        env_prefix="DRIMBOX_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = "site"
    """The node's name (logs, audit, metrics, KPI files; the default document source OID derives from it)."""
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
    publish: PublishSettings = PublishSettings()
    oidc: OidcSettings = OidcSettings()
    peers: PeerSettings = PeerSettings()
    trust_list: TrustListSettings = TrustListSettings()
    retrieve: RetrieveSettings = RetrieveSettings()
    viewer: ViewerSettings = ViewerSettings()
    screening: ScreeningSettings = ScreeningSettings()
    operations: OperationsSettings = OperationsSettings()
    peer_limits: PeerLimitSettings = PeerLimitSettings()
    workstations: tuple[RemoteAE, ...] = ()
    """The site's own DICOM workstations and PACS that may query the node and be C-MOVE destinations
    (``[[workstations]]`` tables: aet, host, port); a C-MOVE to an AE not listed is refused."""
    log_format: Literal["console", "json"] = "console"
    """``json``: one JSON object per log line (structlog), with ``request_id`` — for log collectors."""

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
