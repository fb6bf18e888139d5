"""Token validation against the demo's real OpenID Connect provider (issue #7, acceptance token cases).

The npm ``oidc-provider`` runs as a Node.js process on 127.0.0.5. Every token accepted here was issued
by it — to a client by client credentials, or to a practitioner through the authorization code flow,
where httpx plays the browser on the provider's login and consent forms. Only the deliberately forged or
malformed tokens are built by the test, always from a genuine token of the provider. The verifiers find
the issuer's keys by OIDC discovery and its JWKS (no configured key), or ask the provider's RFC 7662
introspection endpoint, authenticated by mutual TLS (RFC 8705 ``tls_client_auth``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from drimbox.config import AuthSettings
from drimbox.devnet.oidc import OidcAccount, OidcClientRegistration, OidcMtls, OidcProvider, OidcTlsClient
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.errors import ConfigError, Unauthenticated
from drimbox.http_errors import install_error_handlers
from drimbox.trust import Authenticated, Principal, include_protected
from drimbox.trust.introspection import IntrospectionVerifier
from drimbox.trust.jwks import JwksKeys
from drimbox.trust.oidc import pkce_challenge
from drimbox.trust.tokens import JwtVerifier, build_token_verifier, check_token_client, mint_token

IDP_HOST = "127.0.0.5"
CALLBACK = "http://127.0.0.3:9/auth/callback"  # never requested: the flow stops before it
RADIOLOGIST = OidcAccount(rpps="10101010101", password="radio-pw-4512", name="Dr Test Radiologue",
                          role="radiologist")
STRONG = OidcAccount(rpps="40404040404", password="strong-pw-9921", name="Dr Carte CPS", acr="eidas3")
SITE_A = OidcClientRegistration("site-a", secrets.token_urlsafe(16), (CALLBACK,))
SITE_B = OidcClientRegistration("site-b", secrets.token_urlsafe(16), (CALLBACK,))


@dataclass
class Pki:
    ca: TestCA
    idp_key: Path
    next_key: Path
    other_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = TestCA.create(tmp_path_factory.mktemp("pki"))
    return Pki(ca, ca.issue_signing_key("idp").key_path, ca.issue_signing_key("idp-next").key_path,
               ca.issue_signing_key("other-idp").key_path)


def _provider(workdir: Path, key: Path, **options: object) -> OidcProvider:
    return OidcProvider(workdir, signing_key=key, accounts=[RADIOLOGIST, STRONG], clients=[SITE_A, SITE_B],
                        host=IDP_HOST, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def idp(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The issuer the nodes trust: JWT access tokens signed ES256 with the demo key."""
    with _provider(tmp_path_factory.mktemp("idp"), pki.idp_key) as provider:
        yield provider


# -- getting tokens from the provider ---------------------------------------------------------------


def client_token(provider: OidcProvider, client: OidcClientRegistration) -> str:
    """A token of the client itself (client credentials grant): kind ``node``, no user."""
    answer = httpx.post(f"{provider.issuer}/token", data={"grant_type": "client_credentials", "scope": "drimbox"},
                        auth=(client.client_id, client.client_secret), timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _follow(browser: httpx.Client, response: httpx.Response) -> httpx.Response:
    for _ in range(20):
        if not response.is_redirect or response.headers["location"].startswith(CALLBACK):
            return response
        response = browser.get(response.next_request.url if response.next_request else response.headers["location"])
    raise AssertionError("too many redirects")


def _form(page: httpx.Response, action: str) -> str:
    match = re.search(rf'action="(/interaction/[A-Za-z0-9_-]+/{action})"', page.text)
    assert match, f"no {action} form in:\n{page.text[:2000]}"
    return str(page.url.join(match.group(1)))


def login_token(provider: OidcProvider, client: OidcClientRegistration, account: OidcAccount) -> str:
    """A practitioner's access token: authorization code + PKCE, login and consent on the provider's forms."""
    verifier = secrets.token_urlsafe(48)
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        page = _follow(browser, browser.get(f"{provider.issuer}/auth", params={
            "client_id": client.client_id, "response_type": "code", "redirect_uri": CALLBACK,
            "scope": "openid profile drimbox", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
            "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256",
        }))
        answer = _follow(browser, browser.post(_form(page, "login"),
                                               data={"login": account.rpps, "password": account.password}))
        if not answer.is_redirect:  # consent not given yet by this account to this client
            answer = _follow(browser, browser.post(_form(answer, "confirm")))
        assert answer.is_redirect, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = httpx.post(f"{provider.issuer}/token", auth=(client.client_id, client.client_secret), timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier,
    })
    assert tokens.status_code == 200, tokens.text
    return str(tokens.json()["access_token"])


def _settings(provider: OidcProvider, **overrides: object) -> AuthSettings:
    values: dict[str, object] = {"issuer": provider.issuer, "audience": "drimbox", "required_acr": "eidas1"}
    return AuthSettings.model_validate({**values, **overrides})


@pytest.fixture(scope="module")
def verifier(idp: OidcProvider) -> JwtVerifier:
    """The node's verifier: discovery + JWKS, eidas1 required; no key configured."""
    built = build_token_verifier(_settings(idp))
    assert isinstance(built, JwtVerifier) and built.keys is not None
    return built


@pytest.fixture(scope="module")
def practitioner_token(idp: OidcProvider) -> str:
    return login_token(idp, SITE_B, RADIOLOGIST)


# -- accepted ---------------------------------------------------------------------------------------


def test_practitioner_identity_from_a_login_token(verifier: JwtVerifier, idp: OidcProvider,
                                                   practitioner_token: str) -> None:
    principal = verifier.verify(practitioner_token)
    assert principal == Principal(subject="rpps:10101010101", kind="practitioner", issuer=idp.issuer,
                                  rpps="10101010101", role="radiologist", display_name="Dr Test Radiologue",
                                  client_id="site-b")
    assert jwt.decode(practitioner_token, options={"verify_signature": False})["acr"] == "eidas1"


def test_a_higher_acr_satisfies_a_lower_requirement(idp: OidcProvider) -> None:
    strict = JwtVerifier.from_settings(_settings(idp, required_acr="eidas2"))
    assert strict.verify(login_token(idp, SITE_A, STRONG)).rpps == "40404040404"


def test_client_credentials_token_is_the_node_itself(verifier: JwtVerifier, idp: OidcProvider) -> None:
    principal = verifier.verify(client_token(idp, SITE_A))
    assert (principal.kind, principal.client_id, principal.rpps) == ("node", "site-a", None)


def test_keys_are_fetched_once_and_not_on_every_token(idp: OidcProvider) -> None:
    fresh = JwtVerifier.from_settings(_settings(idp))
    assert fresh.keys is not None
    for _ in range(3):
        fresh.verify(client_token(idp, SITE_A))
    assert fresh.keys.fetches == 1


# -- refused: each acceptance case, with its reason -----------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _resign(token: str, header: dict[str, object], sign: object) -> str:
    """The genuine token's claims under ``header``, signed by ``sign(signing_input) -> bytes``."""
    payload = token.split(".")[1]
    signing_input = f"{_b64(json.dumps(header).encode())}.{payload}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"  # type: ignore[operator]


def _header(token: str) -> dict[str, object]:
    return dict(jwt.get_unverified_header(token))


def test_no_token_is_401(verifier: JwtVerifier, practitioner_token: str) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.state.token_verifier = verifier
    api = APIRouter(prefix="/api")

    @api.get("/me")
    def me(principal: Authenticated) -> dict[str, str | None]:
        return {"rpps": principal.rpps}

    include_protected(app, api)
    with TestClient(app) as http:
        assert http.get("/api/me").status_code == 401
        assert http.get("/api/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        ok = http.get("/api/me", headers={"Authorization": f"Bearer {practitioner_token}"})
        assert ok.status_code == 200 and ok.json() == {"rpps": "10101010101"}
    with pytest.raises(Unauthenticated, match="malformed"):
        verifier.verify("")


def test_expired_token(pki: Pki, tmp_path: Path) -> None:
    # 5 s: long enough to be verified once on a loaded 2-core machine, short enough to wait out.
    with _provider(tmp_path, pki.idp_key, access_token_ttl_s=5) as short:
        issued = time.monotonic()
        token = client_token(short, SITE_A)
        strict = JwtVerifier.from_settings(_settings(short, leeway_s=0))
        assert strict.verify(token).client_id == "site-a"
        time.sleep(max(0.0, issued + 6.1 - time.monotonic()))
        with pytest.raises(Unauthenticated, match="token expired"):
            strict.verify(token)


def test_token_from_another_issuer_with_the_same_key(verifier: JwtVerifier, pki: Pki, tmp_path: Path) -> None:
    # Same signing key, same kid, another issuer URL: only the iss check can refuse it.
    with _provider(tmp_path, pki.idp_key) as other:
        token = client_token(other, SITE_A)
        with pytest.raises(Unauthenticated, match="another issuer"):
            verifier.verify(token)


def test_token_from_another_issuer_with_its_own_key(idp: OidcProvider, pki: Pki, tmp_path: Path) -> None:
    keys = JwksKeys(idp.issuer, min_refresh_s=0.0)
    own = JwtVerifier(_settings(idp), keys=keys)
    with _provider(tmp_path, pki.other_key) as other:
        token = client_token(other, SITE_A)
    with pytest.raises(Unauthenticated, match="unknown key"):
        own.verify(token)


def test_alg_none(verifier: JwtVerifier, practitioner_token: str) -> None:
    payload = practitioner_token.split(".")[1]
    for alg in ("none", "None", "NONE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": _header(practitioner_token)["kid"]}).encode())
        with pytest.raises(Unauthenticated, match="not accepted"):
            verifier.verify(f"{header}.{payload}.")


def test_hs256_with_the_public_key_as_secret(verifier: JwtVerifier, idp: OidcProvider, pki: Pki,
                                             practitioner_token: str) -> None:
    jwks = httpx.get(httpx.get(idp.discovery_url).json()["jwks_uri"]).json()
    public = serialization.load_pem_private_key(pki.idp_key.read_bytes(), None).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, der, json.dumps(jwks["keys"][0]).encode()):
        header = {**_header(practitioner_token), "alg": "HS256"}
        forged = _resign(practitioner_token, header, lambda data, s=secret: hmac.new(s, data, hashlib.sha256).digest())
        with pytest.raises(Unauthenticated, match="not accepted"):
            verifier.verify(forged)


def test_rs256_header_on_the_issuer_ec_key(verifier: JwtVerifier, practitioner_token: str) -> None:
    # RS256 is on the allow-list, but the kid names an EC key published for ES256: key type confusion.
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {**_header(practitioner_token), "alg": "RS256"}
    forged = _resign(practitioner_token, header,
                     lambda data: jwt.get_algorithm_by_name("RS256").sign(data, attacker))
    with pytest.raises(Unauthenticated, match="differs from its key's algorithm|does not match"):
        verifier.verify(forged)


def test_forged_signature(verifier: JwtVerifier, practitioner_token: str) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    resigned = _resign(practitioner_token, _header(practitioner_token),
                       lambda data: jwt.get_algorithm_by_name("ES256").sign(data, attacker))
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verifier.verify(resigned)
    # The genuine signature over changed claims (another practitioner's RPPS).
    header, payload, signature = practitioner_token.split(".")
    claims = json.loads(_unb64(payload))
    claims["rpps"] = "99999999999"
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verifier.verify(f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


def test_acr_below_the_required_level(idp: OidcProvider, practitioner_token: str) -> None:
    strict = JwtVerifier.from_settings(_settings(idp, required_acr="eidas2"))
    with pytest.raises(Unauthenticated, match="below the required authentication level eidas2"):
        strict.verify(practitioner_token)
    exact = JwtVerifier.from_settings(_settings(idp, required_acr="psc-carte"))
    with pytest.raises(Unauthenticated, match="below the required"):
        exact.verify(practitioner_token)


def test_token_of_a_client_that_is_not_the_presenting_node(verifier: JwtVerifier, practitioner_token: str) -> None:
    principal = verifier.verify(practitioner_token)  # issued to site-b's client
    clients = {"node-a": frozenset({"site-a"}), "node-b": frozenset({"site-b"})}
    with pytest.raises(Unauthenticated, match="does not belong to the presenting node 'node-a'"):
        check_token_client(principal, "node-a", clients)
    with pytest.raises(Unauthenticated, match="no registered OIDC client"):
        check_token_client(principal, "node-x", clients)
    assert check_token_client(principal, "node-b", clients).node == "node-b"


# -- key rotation --------------------------------------------------------------------------------------


def test_key_rotation_new_key_accepted_after_the_old_set_was_cached(pki: Pki, tmp_path: Path) -> None:
    port = free_port(IDP_HOST)
    with _provider(tmp_path / "before", pki.idp_key, port=port) as before:
        old_token = client_token(before, SITE_A)
        keys = JwksKeys(before.issuer, min_refresh_s=1.0)
        rotating = JwtVerifier(_settings(before), keys=keys)
        assert rotating.verify(old_token).client_id == "site-a"
    assert keys.fetches == 1
    # The provider rotates: signs with the next key, still publishes the old one.
    with _provider(tmp_path / "after", pki.next_key, port=port, previous_keys=[pki.idp_key]) as after:
        new_token = client_token(after, SITE_B)
        assert _header(new_token)["kid"] != _header(old_token)["kid"]
        time.sleep(1.0)  # past min_refresh_s since the first fetch
        assert rotating.verify(new_token).client_id == "site-b"
        assert keys.fetches == 2
        assert rotating.verify(old_token).client_id == "site-a"  # old key still published: still good
        # Invented kids do not make the node hammer the provider: no refetch within min_refresh_s.
        attacker = ec.generate_private_key(ec.SECP256R1())
        for n in range(5):
            forged = _resign(new_token, {"alg": "ES256", "typ": "at+jwt", "kid": f"invented-{n}"},
                             lambda data: jwt.get_algorithm_by_name("ES256").sign(data, attacker))
            with pytest.raises(Unauthenticated, match="unknown key"):
                rotating.verify(forged)
        assert keys.fetches == 2


# -- introspection (RFC 7662) with mutual TLS client authentication (RFC 8705) -------------------------------


@dataclass
class Introspecting:
    provider: OidcProvider
    settings: AuthSettings


@pytest.fixture(scope="module")
def introspecting(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Introspecting]:
    """A provider issuing opaque tokens; the node (``site-a-rs``) introspects with its TLS client certificate."""
    server = pki.ca.issue("idp-tls", hosts=[IDP_HOST], client=False)
    node = pki.ca.issue("site-a-rs", server=False)
    pki.ca.issue("intruder", server=False)
    mtls = OidcMtls(server.cert_path, server.key_path, pki.ca.cert_path, free_port(IDP_HOST))
    provider = _provider(tmp_path_factory.mktemp("idp-opaque"), pki.idp_key, access_token_format="opaque",
                         mtls=mtls, tls_clients=[OidcTlsClient("site-a-rs", "CN=site-a-rs")])
    with provider:
        settings = _settings(provider, mode="introspection", introspection_client_id="site-a-rs",
                             introspection_cert_file=node.cert_path, introspection_key_file=node.key_path,
                             introspection_ca_file=pki.ca.cert_path, introspection_cache_s=2.0)
        yield Introspecting(provider, settings)


def test_introspection_maps_the_practitioner(introspecting: Introspecting) -> None:
    verifier = build_token_verifier(introspecting.settings)
    assert isinstance(verifier, IntrospectionVerifier)
    assert verifier.endpoint().startswith(f"https://{IDP_HOST}:")  # the RFC 8705 alias, not the plain endpoint
    token = login_token(introspecting.provider, SITE_B, RADIOLOGIST)
    assert token.count(".") == 0  # opaque: only the provider can say what it is
    principal = verifier.verify(token)
    assert (principal.rpps, principal.role, principal.kind, principal.client_id) == (
        "10101010101", "radiologist", "practitioner", "site-b")
    strict = IntrospectionVerifier.from_settings(introspecting.settings.model_copy(update={"required_acr": "eidas2"}))
    with pytest.raises(Unauthenticated, match="below the required"):
        strict.verify(token)


def test_revoked_token_refused_once_the_cache_has_expired(introspecting: Introspecting) -> None:
    provider = introspecting.provider
    verifier = IntrospectionVerifier.from_settings(introspecting.settings)
    client = SITE_B
    token = client_token(provider, client)
    assert verifier.verify(token).client_id == "site-b"
    assert verifier.requests == 1
    revoked = httpx.post(f"{provider.issuer}/token/revocation", data={"token": token},
                         auth=(client.client_id, client.client_secret), timeout=10)
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()
    # Within the cache window the earlier answer stands (the bound is what makes it ≤ 60 s, here 2 s).
    assert verifier.verify(token).client_id == "site-b"
    assert verifier.requests == 1
    time.sleep(max(0.0, 2.05 - (time.monotonic() - revoked_at)))
    with pytest.raises(Unauthenticated, match="not active"):
        verifier.verify(token)
    assert verifier.requests == 2
    # A fresh verifier asks at once: refused.
    with pytest.raises(Unauthenticated, match="not active"):
        IntrospectionVerifier.from_settings(introspecting.settings).verify(token)


def test_introspection_refuses_unknown_tokens_and_wrong_client_certificates(introspecting: Introspecting,
                                                                            pki: Pki) -> None:
    verifier = IntrospectionVerifier.from_settings(introspecting.settings)
    with pytest.raises(Unauthenticated, match="not active"):
        verifier.verify(secrets.token_urlsafe(32))
    token = client_token(introspecting.provider, SITE_A)
    intruder = introspecting.settings.model_copy(update={
        "introspection_cert_file": pki.ca.directory / "intruder.pem",
        "introspection_key_file": pki.ca.directory / "intruder.key"})
    with pytest.raises(Unauthenticated, match="introspection answered 401"):
        IntrospectionVerifier.from_settings(intruder).verify(token)


def test_introspection_by_client_secret_basic(introspecting: Introspecting, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SITE_A.client_secret + "\n")
    settings = introspecting.settings.model_copy(update={
        "introspection_client_id": "site-a", "introspection_cert_file": None, "introspection_key_file": None,
        "introspection_secret_file": secret_file})
    verifier = IntrospectionVerifier.from_settings(settings)
    assert verifier.verify(client_token(introspecting.provider, SITE_B)).client_id == "site-b"


def test_introspection_cache_is_bounded_to_60_s() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 60"):
        AuthSettings(issuer="http://127.0.0.5:1", mode="introspection", introspection_cache_s=61)
    with pytest.raises(ConfigError, match="introspection_cert_file"):
        IntrospectionVerifier.from_settings(AuthSettings(issuer="http://127.0.0.5:1", mode="introspection",
                                                         introspection_client_id="x"))


def test_pem_key_mode_still_verifies_the_provider_tokens(idp: OidcProvider, pki: Pki, practitioner_token: str) -> None:
    # The demo nodes' mode today: auth.public_key_file instead of discovery.
    public = pki.idp_key.with_name("idp.pub.pem")
    pem_mode = JwtVerifier.from_settings(_settings(idp, public_key_file=public))
    assert pem_mode.keys is None
    assert pem_mode.verify(practitioner_token).rpps == "10101010101"
    with pytest.raises(Unauthenticated, match="not accepted"):
        pem_mode.verify(_resign(practitioner_token, {**_header(practitioner_token), "alg": "HS256"},
                                lambda data: hmac.new(public.read_bytes(), data, hashlib.sha256).digest()))


def test_dev_token_verifies_in_discovery_mode(verifier: JwtVerifier, idp: OidcProvider, pki: Pki,
                                              practitioner_token: str) -> None:
    # `drimbox dev-token` signs with the demo IdP key: same kid (RFC 7638 thumbprint) and acr as the provider's.
    key = serialization.load_pem_private_key(pki.idp_key.read_bytes(), None)
    token = mint_token(key, issuer=idp.issuer, audience="drimbox", subject="rpps:10101010101", rpps="10101010101")
    assert _header(token)["kid"] == _header(practitioner_token)["kid"]
    assert verifier.verify(token).rpps == "10101010101"


def test_cached_keys_outlive_a_provider_outage(pki: Pki, tmp_path: Path) -> None:
    with _provider(tmp_path, pki.idp_key) as gone:
        token = client_token(gone, SITE_A)
        keys = JwksKeys(gone.issuer, ttl_s=0.2, min_refresh_s=0.1)
        cached = JwtVerifier(_settings(gone), keys=keys)
        assert cached.verify(token).client_id == "site-a"
    time.sleep(0.3)  # past the TTL, provider stopped: the refresh fails, the known keys stay in use
    assert cached.verify(token).client_id == "site-a"
    with pytest.raises(Unauthenticated, match="unreachable"):
        JwtVerifier(_settings(gone), keys=JwksKeys(gone.issuer)).verify(token)
