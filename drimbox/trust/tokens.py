"""Bearer token verification and, for the development network only, token minting.

A :class:`TokenVerifier` turns a bearer token into a :class:`~drimbox.trust.principal.Principal` or
raises :class:`~drimbox.errors.Unauthenticated`. :class:`JwtVerifier` checks a signed JWT against the
configured issuer key: algorithm allow-list (``none`` and HMAC are never accepted, so a public key
can never be abused as an HMAC secret), ``iss``, ``aud``, ``exp``, ``nbf`` with bounded leeway.
OIDC discovery, JWKS rotation and introspection extend this in the trust issue.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509 import load_pem_x509_certificate

from drimbox.config import AuthSettings
from drimbox.errors import ConfigError, Unauthenticated
from drimbox.trust.principal import Principal, PrincipalKind

__all__ = ["JwtVerifier", "TokenVerifier", "load_public_key", "mint_token"]

_ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_KINDS: frozenset[str] = frozenset({"practitioner", "node", "operator", "developer"})


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


class JwtVerifier:
    """Verifies JWT access tokens signed by one issuer key."""

    def __init__(self, settings: AuthSettings, public_key: PublicKeyTypes) -> None:
        bad = set(settings.algorithms) - _ASYMMETRIC_ALGORITHMS
        if bad:
            raise ConfigError(f"auth.algorithms: not allowed: {', '.join(sorted(bad))} (asymmetric only)",
                              key="auth.algorithms")
        if not settings.issuer:
            raise ConfigError("auth.issuer: required to verify tokens", key="auth.issuer")
        self._settings = settings
        self._key = public_key

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> JwtVerifier:
        """Build a verifier from the ``[auth]`` settings."""
        if settings.public_key_file is None:
            raise ConfigError("auth.public_key_file: required to verify tokens", key="auth.public_key_file")
        return cls(settings, load_public_key(settings.public_key_file))

    def verify(self, token: str) -> Principal:
        """Verify signature and registered claims, then map the claims to a principal."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from exc
        if header.get("alg") not in self._settings.algorithms:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key,  # type: ignore[arg-type]
                algorithms=list(self._settings.algorithms),
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        kind = claims.get("kind", "practitioner")
        if kind not in _KINDS:
            raise Unauthenticated(f"unknown principal kind {kind!r}")
        typed_kind: PrincipalKind = kind
        return Principal(
            subject=str(claims["sub"]),
            kind=typed_kind,
            issuer=str(claims["iss"]),
            rpps=_opt_str(claims.get("rpps")),
            role=_opt_str(claims.get("role")),
            display_name=_opt_str(claims.get("name")),
            client_id=_opt_str(claims.get("azp") or claims.get("client_id")),
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


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
) -> str:
    """Sign a token as the development network's identity provider does (never used by a node)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_s,
        "jti": str(uuid.uuid4()), "kind": kind,
    }
    for key, value in (("rpps", rpps), ("role", role), ("name", name), ("azp", client_id)):
        if value is not None:
            claims[key] = value
    return jwt.encode(claims, private_key, algorithm=algorithm)  # type: ignore[arg-type]
