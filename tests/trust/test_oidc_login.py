"""Browser login of a site's users through the demo's real OpenID Connect provider (issues #6 and #7).

The npm ``oidc-provider`` runs as a Node.js process on 127.0.0.5; the node's login routes, session
store and authentication dependency run in a FastAPI app served by uvicorn on 127.0.0.3 (site B's
address). httpx plays the browser: it follows the redirects and posts the provider's login and
consent forms, as a user would. Nothing is mocked and no token is minted by the test.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import jwt
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from drimbox.config import load_settings
from drimbox.devnet.oidc import OidcAccount, OidcClientRegistration, OidcProvider
from drimbox.devnet.pki import TestCA
from drimbox.devnet.ports import free_port
from drimbox.http_errors import install_error_handlers
from drimbox.retrieve.model import Actor
from drimbox.trust import (
    Authenticated,
    BrowserPrincipal,
    CurrentActor,
    JwtVerifier,
    SessionStore,
    include_protected,
)
from drimbox.trust.login import LOGIN_PATHS, install_browser_login, safe_next
from drimbox.trust.oidc import pkce_challenge
from drimbox.trust.sessions import LOGIN_COOKIE, SESSION_COOKIE

NODE_HOST = "127.0.0.3"
IDP_HOST = "127.0.0.5"
RADIOLOGIST = OidcAccount(rpps="10101010101", password="radio-demo-4512", name="Dr Test Radiologue",
                          given_name="Test", family_name="Radiologue")
SECOND = OidcAccount(rpps="20202020202", password="second-demo-7731", name="Dr Second Lecteur", role="radiologist")
REFUSER = OidcAccount(rpps="30303030303", password="refuser-demo-1187", name="Dr Refuse", role="radiologist")
"""Used by the refused-consent test only: the provider remembers a consent per account, so no other
test may have given this one's."""


class LiveApp:
    """A uvicorn server in a thread on ``host``."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LiveApp:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@dataclass
class Site:
    url: str
    store: SessionStore
    provider: OidcProvider


def _node_app(provider: OidcProvider, public_key: Path, secret_file: Path, data_dir: Path, url: str) -> FastAPI:
    """The node's wiring: ``[auth]`` verifier, then ``install_browser_login`` from the ``[oidc]`` settings."""
    settings = load_settings(
        None, name="site-b", pacs={"aet": "PACS_B", "host": "127.0.0.1", "port": 4242},
        storage={"data_dir": str(data_dir)},
        auth={"issuer": provider.issuer, "audience": "drimbox", "public_key_file": str(public_key)},
        oidc={"issuer": provider.issuer, "client_id": "site-b", "client_secret_file": str(secret_file),
              "public_url": url},
    )
    verifier = JwtVerifier.from_settings(settings.auth)
    app = FastAPI()
    install_error_handlers(app)
    app.state.token_verifier = verifier
    assert install_browser_login(app, settings, verifier) is not None

    api = APIRouter(prefix="/api")

    @api.get("/me")
    def me(principal: Authenticated, actor: CurrentActor) -> dict[str, object]:
        return {"subject": principal.subject, "rpps": principal.rpps, "role": principal.role,
                "name": principal.display_name, "issuer": principal.issuer, "client_id": principal.client_id,
                "token": actor.token, "emergency": actor.emergency}

    include_protected(app, api)

    @app.get("/patients/page", response_class=HTMLResponse)
    def page(request: Request, principal: BrowserPrincipal) -> str:
        return f"<p>Bonjour {principal.display_name} ({principal.rpps}) q={request.url.query}</p>"

    return app


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("oidc")
    ca = TestCA.create(tmp / "pki")
    idp_key = ca.issue_signing_key("idp")
    node_port = free_port(NODE_HOST)
    url = f"http://{NODE_HOST}:{node_port}"
    secret = secrets.token_urlsafe(24)
    secret_file = tmp / "oidc-secret"
    secret_file.write_text(secret + "\n")
    provider = OidcProvider(tmp / "idp", signing_key=idp_key.key_path, accounts=[RADIOLOGIST, SECOND, REFUSER],
                            clients=[OidcClientRegistration("site-b", secret, (f"{url}/auth/callback",))],
                            host=IDP_HOST)
    provider.start()
    try:
        app = _node_app(provider, idp_key.public_key_path, secret_file, tmp / "node-data", url)
        store: SessionStore = app.state.session_store
        try:
            with LiveApp(app, NODE_HOST, node_port):
                yield Site(url, store, provider)
        finally:
            store.close()
    finally:
        provider.stop()


# -- the browser --------------------------------------------------------------------------------------


def _browser() -> httpx.Client:
    return httpx.Client(timeout=10.0, follow_redirects=False)


def _follow(client: httpx.Client, response: httpx.Response, *, stop_before: str | None = None) -> httpx.Response:
    """Follow redirects like a browser; stop before requesting a URL that starts with ``stop_before``."""
    for _ in range(20):
        if not response.is_redirect:
            return response
        target = str(response.next_request.url) if response.next_request is not None else response.headers["location"]
        if stop_before is not None and target.startswith(stop_before):
            return response
        response = client.get(target)
    raise AssertionError("too many redirects")


def _form_action(page: httpx.Response, action: str) -> str:
    match = re.search(rf'action="(/interaction/[A-Za-z0-9_-]+/{action})"', page.text)
    assert match, f"no {action} form in:\n{page.text[:2000]}"
    return str(page.url.join(match.group(1)))


def _start(client: httpx.Client, site: Site, next_url: str = "/patients/page") -> httpx.Response:
    """From the node's login route to the provider's login form."""
    page = _follow(client, client.get(f"{site.url}/auth/login", params={"next": next_url}))
    assert page.status_code == 200, page.text
    assert "Identifiant RPPS" in page.text
    return page


def _login_and_consent(client: httpx.Client, site: Site, form: httpx.Response, account: OidcAccount,
                       *, stop_before_callback: bool = False) -> httpx.Response:
    answer = client.post(_form_action(form, "login"), data={"login": account.rpps, "password": account.password})
    stop = f"{site.url}/auth/callback" if stop_before_callback else None
    consent = _follow(client, answer, stop_before=stop)
    if consent.is_redirect:
        return consent  # stopped before the callback (consent already given)
    assert "Autorisation" in consent.text, consent.text
    return _follow(client, client.post(_form_action(consent, "confirm")), stop_before=stop)


def login(client: httpx.Client, site: Site, account: OidcAccount = RADIOLOGIST,
          next_url: str = "/patients/page") -> httpx.Response:
    return _login_and_consent(client, site, _start(client, site, next_url), account)


# -- the full login -------------------------------------------------------------------------------------


def test_full_login_opens_a_session_with_the_provider_account(site: Site) -> None:
    with _browser() as client:
        location = _callback_location(client, site, "/patients/page?ins=1234&lang=fr")
        callback = client.get(location)
        assert callback.status_code == 303 and callback.headers["location"] == "/patients/page?ins=1234&lang=fr"
        page = _follow(client, callback)
        assert page.status_code == 200
        assert str(page.url) == f"{site.url}/patients/page?ins=1234&lang=fr"
        assert "Dr Test Radiologue (10101010101)" in page.text
        cookie = next(v for v in callback.headers.get_list("set-cookie") if v.startswith(f"{SESSION_COOKIE}="))
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes
        assert "secure" not in attributes  # the site face is http here; Secure only with https
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert len(session_id) >= 43  # 256 bits, base64url

        me = client.get(f"{site.url}/api/me")
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["subject"] == "rpps:10101010101"
        assert body["rpps"] == "10101010101"
        assert body["role"] == "radiologist"
        assert body["name"] == "Dr Test Radiologue"
        assert body["issuer"] == site.provider.issuer
        assert body["client_id"] == "site-b"
        assert body["emergency"] is False
        # The session keeps the provider's JWT access token: what the node forwards to source nodes.
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert claims["iss"] == site.provider.issuer and claims["aud"] == "drimbox"
        assert claims["kind"] == "practitioner" and claims["rpps"] == "10101010101"
        assert jwt.get_unverified_header(body["token"])["alg"] == "ES256"

        session = site.store.get(session_id)
        assert session is not None and session.principal.rpps == "10101010101"
        assert session.expires_at <= datetime.fromtimestamp(claims["exp"], UTC)


def test_the_session_token_is_also_a_valid_bearer_and_a_bad_bearer_still_401(site: Site) -> None:
    with _browser() as client:
        login(client, site)
        token = client.get(f"{site.url}/api/me").json()["token"]
    with httpx.Client(timeout=10.0) as api:
        ok = api.get(f"{site.url}/api/me", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["rpps"] == "10101010101" and ok.json()["token"] == token
        assert api.get(f"{site.url}/api/me").status_code == 401
        assert api.get(f"{site.url}/api/me", headers={"Authorization": "Bearer garbage"}).status_code == 401
        # A browser page without credentials goes to the login, and comes back to the page afterwards.
        page = api.get(f"{site.url}/patients/page?x=1", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/login?next=%2Fpatients%2Fpage%3Fx%3D1"


def test_a_bad_bearer_is_401_even_with_a_valid_session(site: Site) -> None:
    with _browser() as client:
        login(client, site)
        assert client.get(f"{site.url}/api/me").status_code == 200
        assert client.get(f"{site.url}/api/me", headers={"Authorization": "Bearer forged"}).status_code == 401
        assert client.get(f"{site.url}/patients/page", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_second_account_gets_its_own_identity(site: Site) -> None:
    with _browser() as client:
        login(client, site, SECOND)
        assert client.get(f"{site.url}/api/me").json()["rpps"] == "20202020202"


# -- refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["wrong-password", "", RADIOLOGIST.password.upper(), SECOND.password])
def test_wrong_password_is_refused_at_the_provider(site: Site, password: str) -> None:
    with _browser() as client:
        form = _start(client, site)
        answer = client.post(_form_action(form, "login"), data={"login": RADIOLOGIST.rpps, "password": password})
        assert answer.status_code == 401
        assert "incorrect" in answer.text
        assert SESSION_COOKIE not in client.cookies
        # The form is shown again, and the right password still works afterwards.
        page = _login_and_consent(client, site, answer, RADIOLOGIST)
        assert page.status_code == 200 and "10101010101" in page.text


def test_unknown_account_is_refused(site: Site) -> None:
    with _browser() as client:
        form = _start(client, site)
        answer = client.post(_form_action(form, "login"), data={"login": "99999999999", "password": "x"})
        assert answer.status_code == 401 and "incorrect" in answer.text
        assert client.get(f"{site.url}/api/me").status_code == 401


def _callback_location(client: httpx.Client, site: Site, next_url: str = "/patients/page") -> str:
    form = _start(client, site, next_url)
    stopped = _login_and_consent(client, site, form, RADIOLOGIST, stop_before_callback=True)
    assert stopped.is_redirect
    location = str(stopped.next_request.url) if stopped.next_request is not None else stopped.headers["location"]
    assert location.startswith(f"{site.url}/auth/callback?")
    return location


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_tampered_state_is_refused_with_a_french_page(site: Site) -> None:
    with _browser() as client:
        location = _callback_location(client, site)
        answer = client.get(_with_query(location, state=secrets.token_urlsafe(32)))
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("text/html")
        assert "Connexion impossible" in answer.text and "state" in answer.text
        assert SESSION_COOKIE not in client.cookies
        assert client.get(f"{site.url}/api/me").status_code == 401
        # The genuine callback still works once (the tampered one consumed nothing) …
        assert _follow(client, client.get(location)).status_code == 200
        assert client.get(f"{site.url}/api/me").status_code == 200
        # … and only once: a replayed callback is refused.
        client.cookies.set(LOGIN_COOKIE, parse_qs(urlsplit(location).query)["state"][0], domain=NODE_HOST,
                           path="/auth")
        replay = client.get(location)
        assert replay.status_code == 400 and "déjà été utilisée" in replay.text


def test_callback_from_another_browser_is_refused(site: Site) -> None:
    with _browser() as victim:
        location = _callback_location(victim, site)
    with _browser() as attacker:
        answer = attacker.get(location)
        assert answer.status_code == 400 and "state" in answer.text
        assert SESSION_COOKIE not in attacker.cookies


def test_forged_code_is_refused_with_400(site: Site) -> None:
    with _browser() as client:
        location = _callback_location(client, site)
        answer = client.get(_with_query(location, code="forged-code"))
        assert answer.status_code == 400
        assert "refusé de finaliser" in answer.text


def test_refused_consent_is_a_provider_error_page(site: Site) -> None:
    with _browser() as client:
        form = _start(client, site, "/patients/page")
        answer = client.post(_form_action(form, "login"),
                             data={"login": REFUSER.rpps, "password": REFUSER.password})
        consent = _follow(client, answer)
        assert "Autorisation" in consent.text
        denied = _follow(client, client.post(_form_action(consent, "abort")))
        assert denied.status_code == 400
        assert str(denied.url).startswith(f"{site.url}/auth/callback")
        assert "annulée" in denied.text
        assert "/auth/login?next=/patients/page" in denied.text


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil.example", "javascript:alert(1)",
    "evil.example", "/ok\r\nLocation: https://evil.example", "\t//evil.example",
])
def test_open_redirect_is_refused(site: Site, target: str) -> None:
    with httpx.Client(timeout=10.0) as client:
        answer = client.get(f"{site.url}/auth/login", params={"next": target}, follow_redirects=False)
        assert answer.status_code == 400
        assert "location" not in answer.headers
        assert "appartient pas à ce site" in answer.text
        assert LOGIN_COOKIE not in answer.cookies


def test_safe_next() -> None:
    assert safe_next(None) == "/" and safe_next("") == "/"
    assert safe_next("/patients/page?x=1&y=%2F%2Fz") == "/patients/page?x=1&y=%2F%2Fz"
    assert safe_next("/auth/login") == "/" and safe_next("/auth/callback?code=1") == "/"
    assert safe_next("//evil") is None and safe_next("https://evil") is None and safe_next("/a\\b") is None
    assert LOGIN_PATHS == {"/auth/login", "/auth/callback", "/auth/logout"}


# -- session life ------------------------------------------------------------------------------------------


def test_expired_session_logs_in_again(site: Site) -> None:
    with _browser() as client:
        login(client, site)
        session_id = client.cookies[SESSION_COOKIE]
        site.store.expire(session_id)
        assert site.store.get(session_id) is None
        assert client.get(f"{site.url}/api/me").status_code == 401
        page = client.get(f"{site.url}/patients/page")
        assert page.status_code == 303 and page.headers["location"] == "/auth/login?next=%2Fpatients%2Fpage"
        # Back through the provider: it still knows the user (its own session), so no form this time.
        again = _follow(client, page)
        if "Identifiant RPPS" in again.text:
            again = _login_and_consent(client, site, again, RADIOLOGIST)
        assert again.status_code == 200 and "10101010101" in again.text
        assert client.cookies[SESSION_COOKIE] != session_id
        assert client.get(f"{site.url}/api/me").status_code == 200


def test_logout_ends_the_session_on_the_server(site: Site) -> None:
    with _browser() as client:
        login(client, site)
        session_id = client.cookies[SESSION_COOKIE]
        out = client.post(f"{site.url}/auth/logout")
        assert out.status_code == 200 and "déconnecté" in out.text
        assert SESSION_COOKIE not in client.cookies
        assert site.store.get(session_id) is None
    with httpx.Client(timeout=10.0, cookies={SESSION_COOKIE: session_id}) as stolen:
        assert stolen.get(f"{site.url}/api/me").status_code == 401


def test_login_with_a_live_session_goes_straight_back(site: Site) -> None:
    with _browser() as client:
        login(client, site)
        answer = client.get(f"{site.url}/auth/login", params={"next": "/patients/page"})
        assert answer.status_code == 303 and answer.headers["location"] == "/patients/page"


def test_sessions_survive_a_restart_and_never_outlive_the_token(tmp_path: Path) -> None:
    from drimbox.trust.principal import Principal

    who = Principal(subject="rpps:1", kind="practitioner", issuer="http://idp", rpps="1", role="radiologist")
    store = SessionStore.at(tmp_path, max_ttl_s=3600)
    soon = datetime.now(UTC) + timedelta(minutes=5)
    session = store.create(who, "tok", soon, language="en", data={"k": "v"})
    assert session.expires_at == soon
    long = store.create(who, "tok2", datetime.now(UTC) + timedelta(days=2))
    assert long.expires_at <= datetime.now(UTC) + timedelta(seconds=3601)
    session.emergency = True
    session.language = "fr"
    store.update(session)
    store.close()
    reopened = SessionStore.at(tmp_path)
    again = reopened.get(session.id)
    assert again is not None
    assert (again.principal, again.access_token, again.language, again.emergency, again.data) == (
        who, "tok", "fr", True, {"k": "v"})
    assert reopened.get("unknown") is None and reopened.get("") is None
    assert session.id not in (tmp_path / "sessions.sqlite").read_bytes().decode("latin-1")  # only its hash
    reopened.delete(session.id)
    assert reopened.get(session.id) is None
    reopened.close()


def test_actor_of_uses_the_session_token_and_emergency(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from drimbox.trust import BrowserSessions, actor_of
    from drimbox.trust.principal import Principal

    who = Principal(subject="rpps:1", kind="practitioner", issuer="http://idp", rpps="1", role="radiologist")
    store = SessionStore.at(tmp_path)
    session = store.create(who, "the-access-token", datetime.now(UTC) + timedelta(minutes=5))
    sessions = BrowserSessions(store)
    app = FastAPI()
    install_error_handlers(app)
    app.state.token_verifier = JwtVerifier.__new__(JwtVerifier)  # never called: no bearer in these requests
    app.state.session_store = store

    @app.get("/actor")
    def actor(request: Request, principal: BrowserPrincipal) -> dict[str, object]:
        sessions.mark_emergency(request)
        sessions.set_language(request, "en")
        found: Actor = actor_of(request, principal)
        return {"token": found.token, "emergency": found.emergency, "rpps": found.rpps}

    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, session.id)
        assert client.get("/actor").json() == {"token": "the-access-token", "emergency": True, "rpps": "1"}
    stored = store.get(session.id)
    assert stored is not None and stored.emergency and stored.language == "en"
    store.close()


def test_dev_mode_is_the_developer(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.state.token_verifier = None

    @app.get("/me")
    def me(principal: Authenticated, actor: CurrentActor) -> dict[str, object]:
        return {"kind": principal.kind, "token": actor.token}

    with TestClient(app) as client:
        assert client.get("/me").json() == {"kind": "developer", "token": ""}


def test_pkce_challenge_rfc7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_login_in_headless_chromium(site: Site) -> None:
    """A real browser: login form, consent, SameSite=Lax cookies across the provider's and the node's hosts."""
    from playwright import sync_api

    chromium = Path("/usr/bin/chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{site.url}/patients/page?ins=42", timeout=15000)
            page.fill("input[name=login]", SECOND.rpps)
            page.fill("input[name=password]", SECOND.password)
            page.click("button:has-text('Se connecter')")
            page.click("button:has-text('Autoriser')", timeout=10000)
            page.wait_for_url(f"{site.url}/patients/page?ins=42", timeout=10000)
            assert "Dr Second Lecteur (20202020202)" in page.content()
            cookies = {c["name"]: c for c in page.context.cookies(site.url)}
            assert cookies[SESSION_COOKIE]["httpOnly"] and cookies[SESSION_COOKIE]["sameSite"] == "Lax"
        finally:
            browser.close()
