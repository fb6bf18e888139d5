"""Bearer token verification and, for the development network only, token minting.

A :class:`TokenVerifier` turns a bearer token into a :class:`~drimbox.trust.principal.Principal` or
raises :class:`~drimbox.errors.Unauthenticated` (HTTP 401) with a reason saying what was wrong.
:class:`JwtVerifier` checks a signed JWT against the issuer's key — one PEM key
(``auth.public_key_file``) or the keys of its JWKS found by OIDC discovery, refetched on an unknown
``kid`` for key rotation (:mod:`drimbox.trust.jwks`). Refused: ``none`` and HMAC algorithms (the
allow-list is asymmetric only and the key type must match the algorithm, so a public key can never be
abused as an HMAC secret), a wrong ``iss`` or ``aud``, ``exp``/``nbf``/``iat`` outside a bounded
leeway, an ``acr`` below ``auth.required_acr``. :class:`~drimbox.trust.introspection.IntrospectionVerifier`
is the RFC 7662 alternative (``auth.mode = "introspection"``); :func:`build_token_verifier` picks one.

On the network face a token must moreover have been issued to a client of the trust-listed node that
presents it (DESIGN §2b): :func:`check_token_client`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509 import load_pem_x509_certificate
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from drimbox.config import AuthSettings
from drimbox.errors import ConfigError, Unauthenticated
from drimbox.trust.jwks import JwksKeys, check_key_for_alg
from drimbox.trust.principal import Principal, PrincipalKind

__all__ = [
    "ACR_LEVELS",
    "JwtVerifier",
    "TokenVerifier",
    "build_token_verifier",
    "check_acr",
    "check_token_client",
    "key_thumbprint",
    "load_public_key",
    "mint_token",
    "principal_from_claims",
]

_ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_KINDS: frozenset[str] = frozenset({"practitioner", "node", "operator", "developer"})

ACR_LEVELS: tuple[str, ...] = ("eidas1", "eidas2", "eidas3")
"""Ordered authentication levels (eIDAS low, substantial, high as Pro Santé Connect / FranceConnect name
them): a token at a higher level satisfies a lower requirement. Other values must match exactly."""


class TokenVerifier(Protocol):
    """Turns a bearer token into a principal."""

    def verify(self, token: str) -> Principal:
        """Return the caller, or raise :class:`~drimbox.errors.Unauthenticated`."""
        ...


def load_public_key(path: Path) -> PublicKeyTypes:
    """Read a PEM public key, or the public key of a PEM certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"auth.public_key_file: cannot read {path} ({exc.strerror})", key="auth.public_key_file"
        ) from exc
    try:
        if b"BEGIN CERTIFICATE" in data:
            return load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError(f"auth.public_key_file: {path} is not a PEM public key or certificate",
                          key="auth.public_key_file") from exc


def check_acr(claims: Mapping[str, Any], required: str | None) -> None:
    """Refuse a user's token authenticated below ``required``.

    A node's own token (``kind`` ``node``, client credentials) has no user and hence no ``acr``; what it
    may do is limited elsewhere (a grant scoped to one KOS), so the user level does not apply to it.
    """
    if required is None or claims.get("kind") == "node":
        return
    acr = claims.get("acr")
    if not isinstance(acr, str) or not acr:
        raise Unauthenticated(f"token has no acr; authentication level {required} is required")
    if acr == required:
        return
    if acr in ACR_LEVELS and required in ACR_LEVELS and ACR_LEVELS.index(acr) >= ACR_LEVELS.index(required):
        return
    raise Unauthenticated(f"token acr {acr!r} is below the required authentication level {required}")


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Map verified claims (JWT or introspection answer) to the caller's identity (RPPS, role, client)."""
    kind = claims.get("kind", "practitioner")
    if kind not in _KINDS:
        raise Unauthenticated(f"unknown principal kind {kind!r}")
    subject = claims.get("sub")
    if kind != "node" and not subject:
        raise Unauthenticated("token names no subject (sub)")
    typed_kind: PrincipalKind = kind
    client_id = _opt_str(claims.get("azp") or claims.get("client_id"))
    return Principal(
        subject=str(subject or client_id or ""),
        kind=typed_kind,
        issuer=str(claims.get("iss", "")),
        rpps=_opt_str(claims.get("rpps")),
        role=_opt_str(claims.get("role") or claims.get("profession")),
        display_name=_opt_str(claims.get("name")),
        client_id=client_id,
    )


def check_token_client(principal: Principal, peer_node: str, node_clients: Mapping[str, Collection[str]]) -> Principal:
    """Accept a token on the network face only if it was issued to a client of the presenting node.

    ``peer_node`` is the trust-listed node identified by the mutual-TLS peer (its host/DN on the trust
    list); ``node_clients`` maps each node id to the OIDC client ids that belong to it. A token stolen
    from node A and replayed by node B is thus refused even though its signature is good (DESIGN §2b).
    Returns the principal with ``node`` set; raises :class:`Unauthenticated` otherwise.
    """
    if not principal.client_id:
        raise Unauthenticated("token names no client (client_id/azp): cannot bind it to the presenting node")
    allowed = node_clients.get(peer_node)
    if not allowed:
        raise Unauthenticated(f"node {peer_node!r} has no registered OIDC client")
    if principal.client_id not in allowed:
        raise Unauthenticated(f"token was issued to client {principal.client_id!r}, "
                              f"which does not belong to the presenting node {peer_node!r}")
    return dataclasses.replace(principal, node=peer_node)


class JwtVerifier:
    """Verifies JWT access tokens signed by the issuer: one configured key, or its JWKS (discovery)."""

    def __init__(self, settings: AuthSettings, public_key: PublicKeyTypes | None = None, *,
                 keys: JwksKeys | None = None) -> None:
        bad = set(settings.algorithms) - _ASYMMETRIC_ALGORITHMS
        if bad:
            raise ConfigError(f"auth.algorithms: not allowed: {', '.join(sorted(bad))} (asymmetric only)",
                              key="auth.algorithms")
        if not settings.issuer:
            raise ConfigError("auth.issuer: required to verify tokens", key="auth.issuer")
        if (public_key is None) == (keys is None):
            raise ConfigError("auth: one issuer key source is needed (public_key_file, or discovery/jwks_url)",
                              key="auth.public_key_file")
        self._settings = settings
        self._key = public_key
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> JwtVerifier:
        """Build a verifier from ``[auth]``: the PEM key if ``public_key_file`` is set, else discovery + JWKS."""
        if settings.public_key_file is not None:
            return cls(settings, load_public_key(settings.public_key_file))
        if not settings.issuer:
            raise ConfigError("auth.issuer: required to verify tokens", key="auth.issuer")
        return cls(settings, keys=JwksKeys(settings.issuer, jwks_url=settings.jwks_url))

    @property
    def keys(self) -> JwksKeys | None:
        """The JWKS key source (``None`` in PEM key mode)."""
        return self._keys

    def _key_for(self, header: Mapping[str, Any], alg: str) -> PublicKeyTypes:
        if self._keys is not None:
            kid = header.get("kid")
            return self._keys.key_for(kid if isinstance(kid, str) else None, alg)
        assert self._key is not None
        check_key_for_alg(self._key, alg)
        return self._key

    def verify(self, token: str) -> Principal:
        """Verify signature and registered claims, then map the claims to a principal."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._settings.algorithms:
            raise Unauthenticated(f"token algorithm {alg!r} is not accepted")
        key = self._key_for(header, alg)
        leeway = self._settings.leeway_s
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,  # type: ignore[arg-type]
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated(f"token from another issuer (expected {self._settings.issuer})") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("token signature is invalid (forged or signed by another key)") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + leeway:
            raise Unauthenticated("token issued in the future (iat)")
        check_acr(claims, self._settings.required_acr)
        return principal_from_claims(claims)


def build_token_verifier(settings: AuthSettings) -> TokenVerifier:
    """The verifier ``auth.mode`` asks for: local JWT verification, or RFC 7662 introspection."""
    if settings.mode == "introspection":
        from drimbox.trust.introspection import IntrospectionVerifier  # noqa: PLC0415 - avoids an import cycle

        return IntrospectionVerifier.from_settings(settings)
    return JwtVerifier.from_settings(settings)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def key_thumbprint(public_key: PublicKeyTypes) -> str:
    """RFC 7638 JWK thumbprint: the ``kid`` the demo provider (provider.mjs) gives the same key."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(public_key))
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    elif isinstance(public_key, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(public_key))
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        raise ValueError(f"no thumbprint for a {type(public_key).__name__}")
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_token(
    private_key: PrivateKeyTypes,
    *,
    issuer: str,
    audience: str | list[str],
    subject: str,
    kind: PrincipalKind = "practitioner",
    rpps: str | None = None,
    role: str | None = None,
    name: str | None = None,
    client_id: str | None = None,
    ttl_s: int = 3600,
    algorithm: str = "ES256",
    acr: str | None = "eidas1",
) -> str:
    """Sign a token as the development network's identity provider does (never used by a node).

    Like the provider's tokens it names its key (``kid``: RFC 7638 thumbprint) and carries the ``acr``
    of the provider's logins, so it verifies alike in public-key and in discovery/JWKS mode.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_s,
        "jti": str(uuid.uuid4()), "kind": kind,
    }
    for key, value in (("rpps", rpps), ("role", role), ("name", name), ("azp", client_id), ("acr", acr)):
        if value is not None:
            claims[key] = value
    headers: dict[str, Any] | None = None
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        headers = {"kid": key_thumbprint(public)}
    return jwt.encode(claims, private_key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]
