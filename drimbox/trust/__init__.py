"""Authentication, authorisation, browser login and sessions, trust list and audit of the node."""

from drimbox.trust.deps import (
    DEV_PRINCIPAL,
    Authenticated,
    BrowserActor,
    BrowserPrincipal,
    CurrentActor,
    actor_of,
    authenticate,
    browser_principal,
    include_protected,
)
from drimbox.trust.principal import Principal, PrincipalKind
from drimbox.trust.sessions import BrowserSessions, Session, SessionStore
from drimbox.trust.tokens import JwtVerifier, TokenVerifier, load_public_key, mint_token

__all__ = [
    "DEV_PRINCIPAL",
    "Authenticated",
    "BrowserActor",
    "BrowserPrincipal",
    "BrowserSessions",
    "CurrentActor",
    "JwtVerifier",
    "Principal",
    "PrincipalKind",
    "Session",
    "SessionStore",
    "TokenVerifier",
    "actor_of",
    "authenticate",
    "browser_principal",
    "include_protected",
    "load_public_key",
    "mint_token",
]
