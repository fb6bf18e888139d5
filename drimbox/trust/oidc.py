"""The node as an OpenID Connect relying party: browser login of the site's users (issue #6, F5/F9).

The site's radiologists reach patient data through their browser (the contextual call, the study
page, the viewer). The node logs them in at the configured identity provider with the authorization
code flow — a confidential client (``client_secret_basic``, or ``client_secret_post`` when that is all
the provider offers) with ``state``, ``nonce`` and PKCE S256 — then:

- verifies the ID token: signature with a key of the provider's JWKS (fetched and cached here,
  refreshed once on an unknown ``kid``: key rotation), an asymmetric algorithm the provider
  announces, ``iss``, ``aud`` = our client id (``azp`` when several audiences), ``exp``/``iat``,
  ``nonce``, and ``at_hash`` when present;
- verifies the access token with the node's own :class:`~drimbox.trust.tokens.TokenVerifier` — the
  same check every bearer request passes — because that token is what the session forwards to
  source nodes (F7): a session is only created for a token the nodes will accept.

Discovery (``{issuer}/.well-known/openid-configuration``) must name exactly the configured issuer,
and its endpoints must be https except on loopback (the demo's provider). Nothing here stores
anything: :mod:`drimbox.trust.login` keeps the pending login and the session in
:class:`~drimbox.trust.sessions.SessionStore`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import jwt

from drimbox.config import NodeSettings, OidcSettings
from drimbox.errors import AuthError, ConfigError, Unauthenticated
from drimbox.trust.principal import Principal
from drimbox.trust.sessions import PendingLogin
from drimbox.trust.tokens import TokenVerifier

__all__ = [
    "AuthorizationRequest",
    "LoginFailed",
    "LoginResult",
    "OidcRelyingParty",
    "ProviderMetadata",
    "ProviderUnavailable",
    "pkce_challenge",
]

_ASYMMETRIC = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")
_DISCOVERY_TTL_S = 3600.0
_JWKS_TTL_S = 300.0
_JWKS_COOLDOWN_S = 30.0
_LOGIN_TTL_S = 600.0
_UNREACHABLE = "Le fournisseur d'identité ne répond pas."


class LoginFailed(AuthError):
    """The login could not be completed (bad answer of the provider, token that does not verify, …).

    ``reason`` is a short French sentence for the user; the message is for the logs.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderUnavailable(LoginFailed):
    """The identity provider cannot be reached or answered garbage (worth retrying later)."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the relying party uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    id_token_algorithms: tuple[str, ...]
    token_auth_methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the browser, and what to keep until the callback."""

    url: str
    login: PendingLogin


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A completed login: the user as the node's verifier sees them, and their tokens."""

    principal: Principal
    access_token: str
    expires_at: datetime
    id_token: str
    id_claims: dict[str, Any]


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: ``BASE64URL(SHA256(verifier))`` without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _half_hash(value: str, alg: str) -> str:
    """``at_hash``: left half of the hash (of the JWS algorithm's size) of the access token."""
    bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
    digest = (bits.get(alg[-3:], hashlib.sha512) if alg != "EdDSA" else hashlib.sha512)(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(name: str, url: object) -> str:
    if not isinstance(url, str) or not url:
        raise ProviderUnavailable(f"discovery: {name} missing", reason="Le fournisseur d'identité est mal configuré.")
    scheme = urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and _is_loopback(url)):
        raise ProviderUnavailable(f"discovery: {name} {url!r} is not https",
                                  reason="Le fournisseur d'identité n'utilise pas HTTPS.")
    return url


class OidcRelyingParty:
    """Authorization code + PKCE login at one provider, for one node (``[oidc]`` settings).

    Thread-safe: discovery and the JWKS are cached behind a lock; everything else is per call.
    """

    def __init__(
        self,
        settings: OidcSettings,
        verifier: TokenVerifier,
        *,
        http: httpx.Client | None = None,
        leeway_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.issuer:
            raise ConfigError("oidc.issuer: required for browser login", key="oidc.issuer")
        if not settings.client_id:
            raise ConfigError("oidc.client_id: required for browser login", key="oidc.client_id")
        if "openid" not in settings.scopes:
            raise ConfigError("oidc.scopes: must include 'openid'", key="oidc.scopes")
        self.settings = settings
        self.issuer = settings.issuer
        self._secret = self._read_secret(settings.client_secret_file)
        self._verifier = verifier
        self._http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self._leeway = leeway_s
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._jwks: tuple[float, jwt.PyJWKSet] | None = None

    @classmethod
    def from_settings(cls, settings: NodeSettings, verifier: TokenVerifier) -> OidcRelyingParty:
        """The relying party of a node, from its ``[oidc]`` and ``[auth]`` settings."""
        return cls(settings.oidc, verifier, leeway_s=settings.auth.leeway_s)

    @staticmethod
    def _read_secret(path: Path | None) -> str:
        if path is None:
            raise ConfigError("oidc.client_secret_file: required for browser login", key="oidc.client_secret_file")
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"oidc.client_secret_file: cannot read {path} ({exc.strerror})",
                              key="oidc.client_secret_file") from exc
        if not secret:
            raise ConfigError(f"oidc.client_secret_file: {path} is empty", key="oidc.client_secret_file")
        return secret

    def close(self) -> None:
        self._http.close()

    # -- discovery and keys -----------------------------------------------------------------------

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{what}: {url}: {exc}", reason=_UNREACHABLE) from exc
        if response.status_code != 200:
            raise ProviderUnavailable(f"{what}: {url} answered {response.status_code}",
                                      reason="Le fournisseur d'identité ne répond pas correctement.")
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderUnavailable(f"{what}: {url} is not JSON",
                                      reason="Le fournisseur d'identité ne répond pas correctement.") from exc
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{what}: {url} is not a JSON object",
                                      reason="Le fournisseur d'identité ne répond pas correctement.")
        return body

    def metadata(self) -> ProviderMetadata:
        """The provider's discovery document (cached for an hour)."""
        with self._lock:
            if self._metadata is not None and self._clock() - self._metadata[0] < _DISCOVERY_TTL_S:
                return self._metadata[1]
        doc = self._get_json(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration", "discovery")
        if doc.get("issuer") != self.issuer:
            raise ProviderUnavailable(f"discovery names issuer {doc.get('issuer')!r}, not {self.issuer!r}",
                                      reason="Le fournisseur d'identité n'est pas celui configuré.")
        if "S256" not in (doc.get("code_challenge_methods_supported") or ()):
            raise ProviderUnavailable("discovery: the provider does not announce PKCE S256",
                                      reason="Le fournisseur d'identité ne prend pas en charge PKCE.")
        announced = doc.get("id_token_signing_alg_values_supported") or ("RS256",)
        algorithms = tuple(a for a in announced if a in _ASYMMETRIC)
        if not algorithms:
            raise ProviderUnavailable("discovery: no asymmetric ID token algorithm",
                                      reason="Le fournisseur d'identité signe ses jetons d'une façon refusée.")
        end_session = doc.get("end_session_endpoint")
        metadata = ProviderMetadata(
            issuer=self.issuer,
            authorization_endpoint=_check_endpoint("authorization_endpoint", doc.get("authorization_endpoint")),
            token_endpoint=_check_endpoint("token_endpoint", doc.get("token_endpoint")),
            jwks_uri=_check_endpoint("jwks_uri", doc.get("jwks_uri")),
            end_session_endpoint=_check_endpoint("end_session_endpoint", end_session) if end_session else None,
            id_token_algorithms=algorithms,
            token_auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)),
        )
        with self._lock:
            self._metadata = (self._clock(), metadata)
        return metadata

    def _keyset(self, metadata: ProviderMetadata, *, force: bool) -> jwt.PyJWKSet:
        now = self._clock()
        with self._lock:
            cached = self._jwks
        if cached is not None and now - cached[0] < (_JWKS_COOLDOWN_S if force else _JWKS_TTL_S):
            return cached[1]
        body = self._get_json(metadata.jwks_uri, "JWKS")
        try:
            keyset = jwt.PyJWKSet.from_dict(body)
        except jwt.PyJWTError as exc:
            raise ProviderUnavailable(f"JWKS: {exc}",
                                      reason="Les clés du fournisseur d'identité sont illisibles.") from exc
        with self._lock:
            self._jwks = (now, keyset)
        return keyset

    def _signing_key(self, token: str, metadata: ProviderMetadata) -> jwt.PyJWK:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"ID token: malformed ({exc})", reason="Le jeton d'identité reçu est illisible.") from exc
        # An unknown kid refetches the JWKS once (key rotation), at most every _JWKS_COOLDOWN_S.
        for force in (False, True):
            keys = [k for k in self._keyset(metadata, force=force).keys
                    if k.public_key_use in (None, "sig") and (kid is None or k.key_id == kid)]
            if kid is None and len(keys) > 1:
                raise LoginFailed("ID token without kid and several keys", reason="Le jeton d'identité est ambigu.")
            if keys:
                return keys[0]
        raise LoginFailed(f"ID token signed with unknown key {kid!r}",
                          reason="Le jeton d'identité est signé d'une clé inconnue.")

    # -- the flow -----------------------------------------------------------------------------------

    def authorization_request(self, *, redirect_uri: str, next_url: str) -> AuthorizationRequest:
        """A fresh authorization request (new state, nonce and PKCE verifier) and the URL to send the browser to."""
        metadata = self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        url = f"{metadata.authorization_endpoint}{separator}{urlencode(params)}"
        expires = datetime.fromtimestamp(self._clock(), UTC) + timedelta(seconds=_LOGIN_TTL_S)
        login = PendingLogin(state=state, nonce=nonce, code_verifier=verifier, next_url=next_url,
                             redirect_uri=redirect_uri, expires_at=expires)
        return AuthorizationRequest(url=url, login=login)

    def redeem(self, *, code: str, login: PendingLogin) -> LoginResult:
        """Exchange the code, verify the ID token and the access token; the user of the new session."""
        metadata = self.metadata()
        tokens = self._exchange(code, login, metadata)
        access_token = tokens.get("access_token")
        id_token = tokens.get("id_token")
        if not isinstance(access_token, str) or not access_token or not isinstance(id_token, str) or not id_token:
            raise LoginFailed("token response without access_token or id_token",
                              reason="Le fournisseur d'identité n'a pas délivré les jetons attendus.")
        if str(tokens.get("token_type", "")).lower() != "bearer":
            raise LoginFailed(f"token_type {tokens.get('token_type')!r}, not Bearer",
                              reason="Le fournisseur d'identité a délivré un jeton d'un type inattendu.")
        id_claims = self._verify_id_token(id_token, login.nonce, access_token, metadata)
        try:
            principal = self._verifier.verify(access_token)
        except Unauthenticated as exc:
            raise LoginFailed(f"access token refused by the node's verifier: {exc}",
                              reason="Le jeton d'accès délivré n'est pas accepté par ce nœud.") from exc
        if principal.issuer != metadata.issuer or principal.subject != id_claims["sub"]:
            raise LoginFailed(f"access token of {principal.issuer!r}/{principal.subject!r} does not match the "
                              f"ID token's {metadata.issuer!r}/{id_claims['sub']!r}",
                              reason="Les jetons délivrés ne désignent pas le même utilisateur.")
        return LoginResult(principal=principal, access_token=access_token,
                           expires_at=self._access_expiry(access_token, tokens.get("expires_in")),
                           id_token=id_token, id_claims=id_claims)

    def _exchange(self, code: str, login: PendingLogin, metadata: ProviderMetadata) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": login.redirect_uri,
                "code_verifier": login.code_verifier}
        return self._token_request(form, metadata, refused=(
            "Le fournisseur d'identité a refusé de finaliser la connexion (code expiré ou déjà utilisé)."))

    def client_credentials(self, scope: str) -> tuple[str, datetime]:
        """This node's own access token (OAuth 2.0 client credentials, RFC 6749 §4.4) and its expiry.

        For work without a user present (:mod:`drimbox.trust.node_credential`); the provider issues it
        to the node's client, with no user and no ``acr``. ``scope`` names the resource servers (the nodes'
        audience, ``auth.audience``).
        """
        metadata = self.metadata()
        body = self._token_request({"grant_type": "client_credentials", "scope": scope}, metadata,
                                   refused="Le fournisseur d'identité a refusé le jeton du nœud.")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise LoginFailed("token endpoint gave no access_token", reason="Aucun jeton d'accès délivré.")
        return token, self._access_expiry(token, body.get("expires_in"))

    def _token_request(self, form: dict[str, str], metadata: ProviderMetadata, *, refused: str) -> dict[str, Any]:
        """POST ``form`` to the token endpoint with the client's authentication; the JSON answer."""
        headers = {"Accept": "application/json"}
        methods = metadata.token_auth_methods
        if "client_secret_basic" in methods or "client_secret_post" not in methods:
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding.
            basic = f"{quote(self.settings.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode("utf-8")).decode("ascii")
        else:
            form = form | {"client_id": self.settings.client_id, "client_secret": self._secret}
        try:
            response = self._http.post(metadata.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"token endpoint: {exc}", reason=_UNREACHABLE) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            if response.status_code >= 500 or error is None:
                raise ProviderUnavailable(f"token endpoint answered {response.status_code}",
                                          reason="Le fournisseur d'identité ne répond pas correctement.")
            raise LoginFailed(f"token endpoint refused the {form['grant_type']} request: {error} "
                              f"({body.get('error_description', '')})", reason=refused)
        return body

    def _verify_id_token(
        self, id_token: str, nonce: str, access_token: str, metadata: ProviderMetadata
    ) -> dict[str, Any]:
        key = self._signing_key(id_token, metadata)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=list(metadata.id_token_algorithms),
                audience=self.settings.client_id,
                issuer=metadata.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise LoginFailed(f"ID token: {exc}", reason="Le jeton d'identité reçu n'est pas valide.") from exc
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != self.settings.client_id:
            raise LoginFailed("ID token for several audiences without our azp",
                              reason="Le jeton d'identité n'est pas destiné à ce nœud.")
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
            raise LoginFailed("ID token nonce mismatch",
                              reason="Le jeton d'identité ne correspond pas à cette connexion.")
        at_hash = claims.get("at_hash")
        if at_hash is not None:
            alg = str(jwt.get_unverified_header(id_token).get("alg"))
            if not secrets.compare_digest(str(at_hash), _half_hash(access_token, alg)):
                raise LoginFailed("ID token at_hash does not match the access token",
                                  reason="Le jeton d'accès ne correspond pas au jeton d'identité.")
        return claims

    def _access_expiry(self, access_token: str, expires_in: object) -> datetime:
        now = self._clock()
        candidates: list[float] = []
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
            candidates.append(now + float(expires_in))
        try:
            # Already verified by the node's verifier; read only its expiry here.
            exp = jwt.decode(access_token, options={"verify_signature": False}).get("exp")
        except jwt.PyJWTError:
            exp = None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            candidates.append(float(exp))
        if not candidates:
            raise LoginFailed("no expiry known for the access token",
                              reason="Le jeton d'accès délivré n'a pas de durée de validité.")
        return datetime.fromtimestamp(min(candidates), UTC)
