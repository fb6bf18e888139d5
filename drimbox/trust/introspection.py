"""RFC 7662 token introspection: the provider says whether a token is still active.

The alternative to local JWT verification (``auth.mode = "introspection"``) for opaque tokens, and for
when a revoked token must stop working before it expires. The node authenticates to the introspection
endpoint as a client — by mutual TLS (RFC 8705 ``tls_client_auth``: ``auth.introspection_cert_file`` /
``introspection_key_file``, the ``client_id`` in the form) or, failing that, ``client_secret_basic``.

Answers are cached for ``auth.introspection_cache_s`` (at most 60 s, and never beyond the token's
``exp``), keyed by a SHA-256 of the token so the cache holds no bearer credential: a token revoked at
the provider is refused once its cache entry has expired. The answer's ``iss``, ``aud``, ``exp`` and
``acr`` are checked again here: the provider says the token is active, the node decides whether it is
meant for it.
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import httpx

from drimbox.config import AuthSettings
from drimbox.errors import ConfigError, Unauthenticated
from drimbox.trust.jwks import discover
from drimbox.trust.principal import Principal
from drimbox.trust.tokens import check_acr, principal_from_claims

__all__ = ["IntrospectionVerifier"]

_MAX_CACHE_ENTRIES = 10_000
_MAX_TOKEN_CHARS = 16_384


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"auth.introspection_secret_file: cannot read {path} ({exc.strerror})",
                          key="auth.introspection_secret_file") from exc
    if not secret:
        raise ConfigError(f"auth.introspection_secret_file: {path} is empty", key="auth.introspection_secret_file")
    return secret


class IntrospectionVerifier:
    """Verifies bearer tokens by asking the provider's RFC 7662 endpoint, with a bounded cache."""

    def __init__(self, settings: AuthSettings, *, client: httpx.Client, client_id: str,
                 client_secret: str | None = None, endpoint: str | None = None) -> None:
        if not settings.issuer:
            raise ConfigError("auth.issuer: required to verify tokens", key="auth.issuer")
        if not client_id:
            raise ConfigError("auth.introspection_client_id: required in introspection mode",
                              key="auth.introspection_client_id")
        self._settings = settings
        self._client = client
        self._client_id = client_id
        self._auth = httpx.BasicAuth(client_id, client_secret) if client_secret is not None else None
        self._endpoint = endpoint or settings.introspection_url
        self._cache_s = min(settings.introspection_cache_s, 60.0)
        self._cache: OrderedDict[bytes, tuple[float, Principal | str]] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0
        """How many introspection requests were sent (observable caching)."""

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> IntrospectionVerifier:
        """Client authentication by mutual TLS if a certificate is configured, else by the client secret."""
        # An SSLContext, not httpx's deprecated cert=/verify=path arguments (httpx 0.28 ignores cert= with them).
        cafile = str(settings.introspection_ca_file) if settings.introspection_ca_file else None
        try:
            context = ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"auth.introspection_ca_file: cannot load {cafile} ({exc})",
                              key="auth.introspection_ca_file") from exc
        secret: str | None = None
        if settings.introspection_cert_file is not None:
            if settings.introspection_key_file is None:
                raise ConfigError("auth.introspection_key_file: required with introspection_cert_file",
                                  key="auth.introspection_key_file")
            try:
                context.load_cert_chain(settings.introspection_cert_file, settings.introspection_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"auth.introspection_cert_file: cannot load the client certificate ({exc})",
                                  key="auth.introspection_cert_file") from exc
        elif settings.introspection_secret_file is not None:
            secret = _read_secret(settings.introspection_secret_file)
        else:
            raise ConfigError("auth: introspection needs a client certificate (introspection_cert_file) "
                              "or a client secret (introspection_secret_file)", key="auth.introspection_cert_file")
        client = httpx.Client(timeout=5.0, verify=context, follow_redirects=False)
        return cls(settings, client=client, client_id=settings.introspection_client_id, client_secret=secret)

    def close(self) -> None:
        self._client.close()

    def endpoint(self) -> str:
        """The introspection endpoint: configured, or announced by the issuer's discovery document.

        With mutual TLS the RFC 8705 ``mtls_endpoint_aliases`` entry is preferred when present.
        """
        if self._endpoint is None:
            doc = discover(self._client, self._settings.issuer)
            aliases = doc.get("mtls_endpoint_aliases")
            url = doc.get("introspection_endpoint")
            if self._auth is None and isinstance(aliases, dict) and aliases.get("introspection_endpoint"):
                url = aliases["introspection_endpoint"]
            if not isinstance(url, str) or not url:
                raise Unauthenticated("cannot verify the token: the provider announces no introspection endpoint")
            self._endpoint = url
        return self._endpoint

    def verify(self, token: str) -> Principal:
        """Return the caller if the provider says the token is active and it is meant for this node."""
        if not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed token")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                outcome = cached[1]
                if isinstance(outcome, str):
                    raise Unauthenticated(outcome)
                return outcome
        outcome, ttl = self._introspect(token)
        with self._lock:
            self._cache[digest] = (time.monotonic() + ttl, outcome)
            self._cache.move_to_end(digest)
            while len(self._cache) > _MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        if isinstance(outcome, str):
            raise Unauthenticated(outcome)
        return outcome

    def _introspect(self, token: str) -> tuple[Principal | str, float]:
        """The principal or the refusal reason, and how long that answer may be reused."""
        form = {"token": token, "token_type_hint": "access_token"}
        if self._auth is None:
            form["client_id"] = self._client_id  # RFC 8705 §2: mTLS clients identify themselves in the body
        try:
            response = self._client.post(self.endpoint(), data=form, auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                                         headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise Unauthenticated(f"cannot verify the token: introspection endpoint unreachable ({exc})") from exc
        finally:
            self.requests += 1
        if response.status_code != 200:
            # Not cached: a provider error says nothing about the token.
            raise Unauthenticated(f"cannot verify the token: introspection answered {response.status_code}")
        try:
            body: dict[str, Any] = response.json()
        except ValueError as exc:
            raise Unauthenticated("cannot verify the token: introspection answer is not JSON") from exc
        if not isinstance(body, dict):
            raise Unauthenticated("cannot verify the token: introspection answer is not a JSON object")
        try:
            return self._check(body)
        except Unauthenticated as exc:
            return str(exc), self._cache_s

    def _check(self, body: dict[str, Any]) -> tuple[Principal, float]:
        if body.get("active") is not True:
            raise Unauthenticated("token is not active (revoked, expired or unknown to the provider)")
        settings = self._settings
        if body.get("iss", settings.issuer) != settings.issuer:
            raise Unauthenticated(f"token from another issuer (expected {settings.issuer})")
        aud = body.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if settings.audience not in audiences:
            raise Unauthenticated(f"token is not meant for audience {settings.audience!r}")
        exp = body.get("exp")
        now = time.time()
        if not isinstance(exp, int | float) or exp <= now - settings.leeway_s:
            raise Unauthenticated("token expired")
        nbf = body.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + settings.leeway_s:
            raise Unauthenticated("token not yet valid (nbf)")
        check_acr(body, settings.required_acr)
        claims = {**body, "iss": settings.issuer}
        return principal_from_claims(claims), max(0.0, min(self._cache_s, exp - now))
