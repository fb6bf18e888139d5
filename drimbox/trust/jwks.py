"""The token issuer's keys, found by OpenID Connect discovery and its JWKS, with key rotation.

A provider rotates its signing key by publishing the new key in its JWKS (next to the old one) and
signing with it. A verifier that cached the old set then meets an unknown ``kid``: :class:`JwksKeys`
refetches the set once, but at most every ``min_refresh_s`` seconds, so a stream of tokens with
invented ``kid`` values cannot turn the node into an amplifier against the provider. The set is also
refreshed after ``ttl_s`` so a withdrawn key stops being trusted.

Each key is checked against the token's algorithm (:func:`check_key_for_alg`): an EC key only for
``ES*`` with the matching curve, an RSA key only for ``RS*``/``PS*``, a JWK's own ``alg``/``use`` if it
states them. HMAC never appears (the verifier's allow-list is asymmetric only), so a public key can
never be used as a shared secret.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from drimbox.errors import ConfigError, Unauthenticated

__all__ = ["JwksKeys", "check_key_for_alg", "discover"]

_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_MAX_DOCUMENT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Key:
    key: PublicKeyTypes
    alg: str | None
    """The JWK's own ``alg``, when it states one: the key may then sign with that algorithm only."""


def check_key_for_alg(key: PublicKeyTypes, alg: str) -> None:
    """Refuse a key whose type does not match ``alg`` (the root of alg-confusion attacks)."""
    if alg in _CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVES[alg]:
            raise Unauthenticated(f"token algorithm {alg} does not match the issuer key type")
    elif alg[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthenticated(f"token algorithm {alg} does not match the issuer key type")
        if key.key_size < 2048:
            raise Unauthenticated("issuer RSA key shorter than 2048 bits")
    else:
        raise Unauthenticated(f"token algorithm {alg!r} is not accepted")


def _get_json(client: httpx.Client, url: str, what: str) -> dict[str, Any]:
    try:
        response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Unauthenticated(f"cannot verify the token: {what} {url} unreachable ({exc})") from exc
    if response.status_code != 200:
        raise Unauthenticated(f"cannot verify the token: {what} {url} answered {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        raise Unauthenticated(f"cannot verify the token: {what} {url} too large")
    try:
        body = response.json()
    except ValueError as exc:
        raise Unauthenticated(f"cannot verify the token: {what} {url} is not JSON") from exc
    if not isinstance(body, dict):
        raise Unauthenticated(f"cannot verify the token: {what} {url} is not a JSON object")
    return body


def discover(client: httpx.Client, issuer: str) -> dict[str, Any]:
    """The issuer's discovery document, refused unless it names exactly this issuer (OIDC Discovery §4.3)."""
    doc = _get_json(client, f"{issuer.rstrip('/')}/.well-known/openid-configuration", "discovery")
    if doc.get("issuer") != issuer:
        raise Unauthenticated(f"cannot verify the token: discovery names issuer {doc.get('issuer')!r}, not {issuer!r}")
    return doc


class JwksKeys:
    """The issuer's public signing keys by ``kid``, cached, refetched on an unknown ``kid`` (rate-limited).

    Thread-safe: FastAPI runs synchronous dependencies in a thread pool.
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        ttl_s: float = 300.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not issuer and not jwks_url:
            raise ConfigError("auth.issuer: required to find the issuer's keys", key="auth.issuer")
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._unnamed: list[_Key] = []
        self._fetched_at: float | None = None
        self.fetches = 0
        """How many times the JWKS was downloaded (observable rate limiting)."""

    def close(self) -> None:
        self._client.close()

    def jwks_url(self) -> str:
        """The JWKS address: configured, or the ``jwks_uri`` of the issuer's discovery document."""
        if self._jwks_url is None:
            uri = discover(self._client, self.issuer).get("jwks_uri")
            if not isinstance(uri, str) or not uri:
                raise Unauthenticated("cannot verify the token: discovery announces no jwks_uri")
            self._jwks_url = uri
        return self._jwks_url

    def _fetch(self) -> None:
        body = _get_json(self._client, self.jwks_url(), "JWKS")
        keys: dict[str, _Key] = {}
        unnamed: list[_Key] = []
        for entry in body.get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "d" in entry:
                continue  # encryption keys are not for us; a private key published by mistake is not trusted
            declared = entry.get("alg")
            try:
                key = _Key(jwt.PyJWK.from_dict(entry).key, declared if isinstance(declared, str) else None)
            except jwt.PyJWTError:
                continue  # a key type we do not support (e.g. OKP without the extra) is skipped, not fatal
            kid = entry.get("kid")
            if isinstance(kid, str) and kid:
                keys[kid] = key
            else:
                unnamed.append(key)
        self._keys, self._unnamed = keys, unnamed
        self._fetched_at = time.monotonic()
        self.fetches += 1

    def key_for(self, kid: str | None, alg: str) -> PublicKeyTypes:
        """The public key to check a token signed with ``alg`` by key ``kid``, or :class:`Unauthenticated`."""
        with self._lock:
            now = time.monotonic()
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None:
                self._fetch()
            elif age >= self._ttl_s:
                try:
                    self._fetch()
                except Unauthenticated:
                    if not self._keys and not self._unnamed:
                        raise
                    # The provider is down: keep the keys we have, try again after min_refresh_s.
                    self._fetched_at = now - self._ttl_s + self._min_refresh_s
            found = self._lookup(kid)
            if found is None and age is not None and age < self._ttl_s:
                # Unknown kid: maybe a rotated key. Refetch, but not more often than min_refresh_s.
                if self._fetched_at is None or now - self._fetched_at >= self._min_refresh_s:
                    self._fetch()
                    found = self._lookup(kid)
        if found is None:
            raise Unauthenticated(f"token signed by an unknown key (kid {kid!r}) of the issuer")
        if found.alg is not None and found.alg != alg:
            raise Unauthenticated(f"token algorithm {alg} differs from its key's algorithm {found.alg}")
        check_key_for_alg(found.key, alg)
        return found.key

    def _lookup(self, kid: str | None) -> _Key | None:
        if kid is not None:
            return self._keys.get(kid)
        candidates = list(self._keys.values()) + self._unnamed
        return candidates[0] if len(candidates) == 1 else None
