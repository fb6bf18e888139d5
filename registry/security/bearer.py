"""Bearer JWT verification for the FHIR (MHD) face (IHE IUA-style access tokens).

Tokens are checked with PyJWT against one issuer public key: asymmetric algorithms only (``none``
and HMAC are never accepted, so the public key can never serve as an HMAC secret), ``iss``, ``aud``,
``exp``, ``iat`` and ``sub`` required, bounded leeway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509 import load_pem_x509_certificate

from registry.errors import Unauthenticated

__all__ = ["BearerPrincipal", "TokenVerifier", "load_public_key"]


@dataclass(frozen=True)
class BearerPrincipal:
    """The caller of a FHIR request."""

    subject: str
    issuer: str
    rpps: str | None
    role: str | None


def load_public_key(path: Path) -> PublicKeyTypes:
    """A PEM public key, or the public key of a PEM certificate."""
    data = path.read_bytes()
    if b"BEGIN CERTIFICATE" in data:
        return load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)


class TokenVerifier:
    """Verifies access tokens of one issuer; without issuer configuration it refuses every token."""

    def __init__(
        self,
        *,
        issuer: str | None,
        audience: str | None,
        public_key: PublicKeyTypes | None,
        algorithms: tuple[str, ...],
        leeway_s: int,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._key = public_key
        self._algorithms = algorithms
        self._leeway = leeway_s

    def verify(self, authorization: str | None) -> BearerPrincipal:
        """Check an ``Authorization`` header value.

        Raises
        ------
        Unauthenticated
            No ``Bearer`` token, or a token that fails any check; the message says which.
        """
        if not authorization:
            raise Unauthenticated("no Authorization header: a bearer token is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        if self._key is None or not self._issuer or not self._audience:
            raise Unauthenticated("this registry has no token issuer configured: bearer tokens cannot be verified")
        try:
            header = jwt.get_unverified_header(token.strip())
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from exc
        if header.get("alg") not in self._algorithms:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                key=self._key,  # type: ignore[arg-type]
                algorithms=list(self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        rpps, role = claims.get("rpps"), claims.get("role")
        return BearerPrincipal(
            subject=str(claims["sub"]),
            issuer=str(claims["iss"]),
            rpps=None if rpps is None else str(rpps),
            role=None if role is None else str(role),
        )
