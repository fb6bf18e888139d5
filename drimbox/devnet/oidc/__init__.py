"""The demo's identity provider: the certified npm ``oidc-provider`` run locally by Node.js.

Issue #7 asks that the demo and the tests log users in through a real OpenID Connect provider rather
than tokens minted by test code, so the node's relying party (:mod:`drimbox.trust.oidc`) meets the
protocol as a real provider speaks it (discovery, PKCE, consent, signed ID and JWT access tokens).
:class:`OidcProvider` runs ``provider.mjs`` (next to this file) like the other devnet servers: own
process group, log file, ready when discovery answers, SIGTERM then SIGKILL.

The provider signs with the demo IdP key (``pki/idp.key``, EC P-256, ES256) — the key ``drimbox
dev-token`` signs with — so both kinds of token verify with the same ``[auth]`` settings. Accounts
are test practitioners (login = RPPS, with a password); clients are the nodes (confidential,
``client_secret_basic``, PKCE S256 required; each may also get a token of its own by client credentials).
For the token tests the provider can also publish previous keys (key rotation), issue opaque access
tokens (RFC 7662 introspection and RFC 7009 revocation only work on those), and open an HTTPS listener
that authenticates resource servers by their client certificate (RFC 8705 ``tls_client_auth``,
:class:`OidcMtls`, :class:`OidcTlsClient`). The npm package is installed by ``scripts/setup.sh``
into ``.venv/share/drimbox/oidc-provider/node_modules`` (pinned by ``package-lock.json`` here).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Self

import httpx

from drimbox.devnet.errors import DevnetError
from drimbox.devnet.ports import free_port
from drimbox.devnet.process import ChildProcess, ManagedServer, tail

__all__ = [
    "DEFAULT_RESOURCE",
    "OidcAccount",
    "OidcClientRegistration",
    "OidcMtls",
    "OidcProvider",
    "OidcTlsClient",
    "PROVIDER_SCRIPT",
    "default_modules_dir",
]

PROVIDER_SCRIPT = Path(__file__).with_name("provider.mjs")
DEFAULT_RESOURCE = "urn:drimbox:api"
"""Resource indicator (RFC 8707) of the nodes' API: every access token is issued for it."""


def default_modules_dir() -> Path:
    """Where ``scripts/setup.sh`` installs the npm package (``DRIMBOX_OIDC_PROVIDER_MODULES`` overrides)."""
    override = os.environ.get("DRIMBOX_OIDC_PROVIDER_MODULES")
    if override:
        return Path(override)
    return Path(sys.prefix) / "share" / "drimbox" / "oidc-provider" / "node_modules"


@dataclass(frozen=True, slots=True)
class OidcAccount:
    """A test practitioner who can log in (login = ``rpps``)."""

    rpps: str
    password: str
    name: str
    given_name: str = ""
    family_name: str = ""
    role: str = "radiologist"
    kind: Literal["practitioner", "operator"] = "practitioner"
    acr: str | None = None
    """Authentication level of this account's logins (default: the provider's ``acr``)."""

    @property
    def subject(self) -> str:
        """The ``sub`` of this account's tokens (the same as ``drimbox dev-token``'s)."""
        return f"rpps:{self.rpps}"


@dataclass(frozen=True, slots=True)
class OidcClientRegistration:
    """A node registered with the provider as a confidential client."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OidcTlsClient:
    """A resource server (a node) that introspects tokens, authenticated by its certificate's subject DN."""

    client_id: str
    subject_dn: str
    """As Node.js prints it, RDNs joined by commas, e.g. ``CN=site-a``."""


@dataclass(frozen=True, slots=True)
class OidcMtls:
    """The provider's mutual-TLS listener (RFC 8705): server certificate and the CA of client certificates."""

    cert: Path
    key: Path
    ca: Path
    port: int


class OidcProvider(ManagedServer):
    """``oidc-provider`` on ``host:port``, issuer ``http://host:port``.

    Parameters
    ----------
    workdir:
        Directory for the generated settings file (``provider.json``, mode 0600: it holds the
        passwords and client secrets) and the log (``provider.log``).
    signing_key:
        PEM private key (EC P-256) the provider signs ID and access tokens with.
    accounts, clients:
        Who may log in, and which nodes may ask.
    audience:
        ``aud`` of the JWT access tokens (the nodes' ``auth.audience``).
    modules_dir:
        The ``node_modules`` holding ``oidc-provider``; default :func:`default_modules_dir`.
    previous_keys:
        PEM private keys (EC P-256) published in the JWKS after ``signing_key`` but not signing: a key
        rotation in progress (tokens signed with them keep verifying).
    access_token_format:
        ``opaque`` for tokens only introspection can read (RFC 7662/7009 refuse JWT access tokens).
    mtls, tls_clients:
        The RFC 8705 listener and the resource servers that authenticate on it by certificate subject.
    """

    _stop_timeout_s = 5.0

    def __init__(
        self,
        workdir: Path,
        *,
        signing_key: Path,
        accounts: Sequence[OidcAccount],
        clients: Sequence[OidcClientRegistration],
        host: str = "127.0.0.5",
        port: int | None = None,
        audience: str = "drimbox",
        resource: str = DEFAULT_RESOURCE,
        acr: str = "eidas1",
        access_token_ttl_s: int = 3600,
        modules_dir: Path | None = None,
        die_with_parent: bool = True,
        previous_keys: Sequence[Path] = (),
        access_token_format: Literal["jwt", "opaque"] = "jwt",
        mtls: OidcMtls | None = None,
        tls_clients: Sequence[OidcTlsClient] = (),
    ) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.signing_key = Path(signing_key)
        self.accounts = tuple(accounts)
        self.clients = tuple(clients)
        self.host = host
        self.port = port or free_port(host)
        self.audience = audience
        self.resource = resource
        self.acr = acr
        self.access_token_ttl_s = access_token_ttl_s
        self.modules_dir = modules_dir or default_modules_dir()
        self._die_with_parent = die_with_parent
        self.previous_keys = tuple(Path(k) for k in previous_keys)
        self.access_token_format = access_token_format
        self.mtls = mtls
        self.tls_clients = tuple(tls_clients)

    @property
    def issuer(self) -> str:
        """The issuer URL (no trailing slash): the ``iss`` of every token, the discovery base."""
        return f"http://{self.host}:{self.port}"

    @property
    def mtls_url(self) -> str | None:
        """Base of the RFC 8705 endpoints (``/token``, ``/token/introspection``), when enabled."""
        return None if self.mtls is None else f"https://{self.host}:{self.mtls.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def log_path(self) -> Path:
        return self.workdir / "provider.log"

    @property
    def settings_path(self) -> Path:
        return self.workdir / "provider.json"

    def account(self, rpps: str) -> OidcAccount:
        """The account of ``rpps`` (KeyError if none)."""
        return next(a for a in self.accounts if a.rpps == rpps)

    def _settings(self) -> dict[str, object]:
        return {
            "issuer": self.issuer,
            "host": self.host,
            "port": self.port,
            "modules_dir": str(self.modules_dir.resolve()),
            "signing_key": str(self.signing_key.resolve()),
            "audience": self.audience,
            "resource": self.resource,
            "acr": self.acr,
            "access_token_ttl_s": self.access_token_ttl_s,
            "accounts": [asdict(a) for a in self.accounts],
            "clients": [{**asdict(c), "redirect_uris": list(c.redirect_uris)} for c in self.clients],
            "previous_keys": [str(k.resolve()) for k in self.previous_keys],
            "access_token_format": self.access_token_format,
            "mtls": None if self.mtls is None else {
                "port": self.mtls.port, "cert": str(self.mtls.cert.resolve()), "key": str(self.mtls.key.resolve()),
                "ca": str(self.mtls.ca.resolve()),
            },
            "tls_clients": [asdict(c) for c in self.tls_clients],
        }

    def start(self, timeout: float = 15.0) -> Self:
        """Write the settings, start Node.js and wait until discovery answers."""
        node = shutil.which("node")
        if node is None:
            raise DevnetError("Node.js (`node`) is not installed: run scripts/setup.sh")
        if not (self.modules_dir / "oidc-provider" / "package.json").is_file():
            raise DevnetError(f"the npm package oidc-provider is not installed in {self.modules_dir}: "
                              "run scripts/setup.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._settings(), fh, indent=2)
        self._proc = ChildProcess(
            [node, str(PROVIDER_SCRIPT), str(self.settings_path)],
            log_path=self.log_path,
            cwd=self.workdir,
            env={"NODE_ENV": "production", "DEBUG": ""},
            die_with_parent=self._die_with_parent,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        delay = 0.02
        with httpx.Client(timeout=1.0) as client:
            while True:
                status = self._proc.poll()
                if status is not None:
                    raise DevnetError(f"oidc-provider exited with status {status} during start-up\n{self.log_tail()}")
                try:
                    if client.get(self.discovery_url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() >= deadline:
                    raise DevnetError(f"oidc-provider did not answer {self.discovery_url} within {timeout:g} s\n"
                                      f"{self.log_tail()}")
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the provider's log (for error messages)."""
        return tail(self.log_path, lines)
