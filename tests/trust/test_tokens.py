"""JWT verification: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from drimbox.config import AuthSettings
from drimbox.errors import ConfigError, Unauthenticated
from drimbox.trust import JwtVerifier, mint_token
from drimbox.trust.tokens import check_acr

ISSUER = "https://idp.test/realms/demo"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    """The issuer's signing key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture()
def verifier(key: ec.EllipticCurvePrivateKey) -> JwtVerifier:
    """A verifier trusting ``key`` for ``ISSUER``."""
    return JwtVerifier(AuthSettings(issuer=ISSUER, audience="drimbox"), key.public_key())


def test_valid_token_maps_claims(key: ec.EllipticCurvePrivateKey, verifier: JwtVerifier) -> None:
    token = mint_token(key, issuer=ISSUER, audience="drimbox", subject="rpps:10101010101", rpps="10101010101",
                       role="radiologist", name="Dr Test", client_id="site-b")
    principal = verifier.verify(token)
    assert principal.rpps == "10101010101"
    assert principal.role == "radiologist"
    assert principal.kind == "practitioner"
    assert principal.client_id == "site-b"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object]) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"iss": ISSUER, "aud": "drimbox", "sub": "x", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return claims


def _hmac_with_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    # HS/RS confusion: the attacker signs with HMAC, using the issuer's public key as the secret.
    secret = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


REFUSED: dict[str, Callable[[ec.EllipticCurvePrivateKey], str]] = {
    "expired": lambda k: jwt.encode(_claims(exp=int(time.time()) - 3600), k, algorithm="ES256"),
    "other issuer": lambda k: jwt.encode(_claims(iss="https://evil.test"), k, algorithm="ES256"),
    "other audience": lambda k: jwt.encode(_claims(aud="someone-else"), k, algorithm="ES256"),
    "forged signature": lambda k: jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"),
    "alg none": lambda k: _unsigned(_claims()),
    "hmac with public key": _hmac_with_public_key,
    "no exp": lambda k: jwt.encode({n: v for n, v in _claims().items() if n != "exp"}, k, algorithm="ES256"),
    "not yet valid": lambda k: jwt.encode(_claims(nbf=int(time.time()) + 3600), k, algorithm="ES256"),
    "garbage": lambda k: "not-a-token",
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case: str, key: ec.EllipticCurvePrivateKey, verifier: JwtVerifier) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(REFUSED[case](key))


def test_hmac_algorithms_cannot_be_configured(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigError, match="auth.algorithms"):
        JwtVerifier(AuthSettings(issuer=ISSUER, algorithms=("HS256",)), key.public_key())


def test_rsa_key_accepted_when_configured() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = JwtVerifier(AuthSettings(issuer=ISSUER, algorithms=("RS256",)), rsa_key.public_key())
    token = mint_token(rsa_key, issuer=ISSUER, audience="drimbox", subject="s", algorithm="RS256")
    assert verifier.verify(token).subject == "s"


def test_iat_in_the_future_refused(key: ec.EllipticCurvePrivateKey, verifier: JwtVerifier) -> None:
    future = int(time.time()) + 3600
    with pytest.raises(Unauthenticated, match="iat"):
        verifier.verify(jwt.encode(_claims(iat=future, exp=future + 60), key, algorithm="ES256"))


def test_key_type_must_match_the_algorithm() -> None:
    # An RSA issuer key with ES256 on the allow-list: an ES256 token cannot be checked against it.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = JwtVerifier(AuthSettings(issuer=ISSUER, algorithms=("ES256", "RS256")), rsa_key.public_key())
    ec_token = jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    with pytest.raises(Unauthenticated, match="does not match the issuer key type"):
        verifier.verify(ec_token)
    p384 = JwtVerifier(AuthSettings(issuer=ISSUER), ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(Unauthenticated, match="does not match the issuer key type"):
        p384.verify(jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256"))


@pytest.mark.parametrize(("acr", "required", "accepted"), [
    ("eidas1", None, True), (None, None, True), ("eidas1", "eidas1", True), ("eidas3", "eidas2", True),
    ("eidas1", "eidas2", False), (None, "eidas1", False), ("", "eidas1", False), ("custom", "eidas1", False),
    ("custom", "custom", True),
])
def test_acr_levels(acr: str | None, required: str | None, accepted: bool) -> None:
    claims = {} if acr is None else {"acr": acr}
    if accepted:
        check_acr(claims, required)
    else:
        with pytest.raises(Unauthenticated, match="acr"):
            check_acr(claims, required)


def test_node_tokens_have_no_user_and_no_acr() -> None:
    check_acr({"kind": "node"}, "eidas1")
    with pytest.raises(Unauthenticated, match="acr"):
        check_acr({"kind": "practitioner"}, "eidas1")


def test_one_key_source_only(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigError, match="one issuer key source"):
        JwtVerifier(AuthSettings(issuer=ISSUER))
    verifier = JwtVerifier.from_settings(AuthSettings(issuer=ISSUER))  # no key file: discovery + JWKS
    assert verifier.keys is not None and verifier.keys.fetches == 0  # nothing fetched before the first token
