"""Authentication, authorisation and (later) trust list and audit of the node."""

from drimbox.trust.deps import DEV_PRINCIPAL, Authenticated, authenticate, include_protected
from drimbox.trust.principal import Principal, PrincipalKind
from drimbox.trust.tokens import JwtVerifier, TokenVerifier, load_public_key, mint_token

__all__ = [
    "DEV_PRINCIPAL",
    "Authenticated",
    "JwtVerifier",
    "Principal",
    "PrincipalKind",
    "TokenVerifier",
    "authenticate",
    "include_protected",
    "load_public_key",
    "mint_token",
]
