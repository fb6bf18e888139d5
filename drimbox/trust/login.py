"""Browser login routes of the site face: ``/auth/login``, ``/auth/callback``, ``/auth/logout``.

A page that shows patient data, asked without a session, raises
:class:`~drimbox.errors.LoginRequired`; the app answers 303 to ``/auth/login?next=<the page>``. Here
the node sends the browser to the identity provider (:class:`~drimbox.trust.oidc.OidcRelyingParty`),
takes it back on ``/auth/callback``, opens a server-side session
(:class:`~drimbox.trust.sessions.SessionStore`) and returns to ``next``.

Why these rules:

- ``next`` must be a relative path on this site (``/…``, not ``//host``, no scheme, no backslash,
  no control character): anything else is refused with 400, so the login can never be used as an
  open redirect to a phishing page.
- The ``state`` comes back both in the query and in a short-lived HttpOnly cookie set by
  ``/auth/login``; they must match and the pending login is single use. This binds the callback to
  the browser that started the login (no login CSRF, no session fixation), and a replayed or
  tampered callback is refused.
- Failures are plain French HTML pages with 400 (503 when the provider cannot be reached), never a
  500 and never a stack trace: the user is told what happened and how to start again.
- Logout is a POST (a cross-site page cannot log the user out: the cookie is SameSite=Lax) and
  deletes the session on the server, not only the cookie.

These paths show no data: list :data:`LOGIN_PATHS` with ``/healthz`` as the app's public paths.
"""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, urlsplit

import structlog
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from drimbox.config import NodeSettings
from drimbox.trust.oidc import LoginFailed, OidcRelyingParty, ProviderUnavailable
from drimbox.trust.sessions import LOGIN_COOKIE, SESSION_COOKIE, SessionStore
from drimbox.trust.tokens import TokenVerifier

__all__ = ["LOGIN_PATHS", "auth_router", "install_browser_login", "safe_next"]

LOGIN_PATHS = frozenset({"/auth/login", "/auth/callback", "/auth/logout"})
"""The login routes: public (they show no data), like ``/healthz``."""

_log = structlog.get_logger("drimbox.trust.login")
_MAX_NEXT = 2048
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a relative path on this site, ``"/"`` when absent, ``None`` when refused."""
    if value is None or value == "":
        return "/"
    if len(value) > _MAX_NEXT or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    if parts.path in LOGIN_PATHS:
        return "/"  # never loop back into the login itself
    return value


def _page(title: str, paragraphs: list[str], *, status: int, retry: str | None = "/") -> HTMLResponse:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if retry is not None:
        href = html.escape(f"/auth/login?next={quote(retry, safe='/')}", quote=True)
        body += f'<p><a href="{href}">Se connecter</a></p>'
    document = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} — DRIMbox</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status,
                        headers={**_NO_STORE, "Content-Security-Policy": "default-src 'none'; style-src 'self'"})


def _failure(reason: str, *, status: int = 400, retry: str | None = "/") -> HTMLResponse:
    return _page("Connexion impossible", [reason, "Vous pouvez recommencer la connexion."], status=status, retry=retry)


def auth_router(
    relying_party: OidcRelyingParty,
    store: SessionStore,
    *,
    public_url: str | None = None,
) -> APIRouter:
    """The login routes, for the site face (include with ``app.include_router``: they are public).

    ``public_url`` is the site face's base URL as browsers reach it (``oidc.public_url``): the
    redirect URI is ``{public_url}/auth/callback``; derived from the request when ``None``.
    Session cookies are ``Secure`` when that URL (or the request) is https.
    """
    router = APIRouter(prefix="/auth", tags=["login"])

    def base(request: Request) -> str:
        return (public_url or str(request.base_url)).rstrip("/")

    def secure(request: Request) -> bool:
        return base(request).startswith("https://")

    @router.get("/login", response_class=HTMLResponse, include_in_schema=True)
    def login(
        request: Request, next_url: Annotated[str | None, Query(alias="next")] = None
    ) -> Response:
        """Send the browser to the identity provider; it comes back to ``/auth/callback``, then to ``next``."""
        target = safe_next(next_url)
        if target is None:
            _log.warning("login refused: next is not a path of this site", next=(next_url or "")[:200])
            return _failure("L'adresse de retour demandée n'appartient pas à ce site : la connexion est refusée "
                            "pour votre sécurité.", retry="/")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and store.get(cookie) is not None:
            return RedirectResponse(target, status_code=303, headers=_NO_STORE)
        try:
            auth = relying_party.authorization_request(redirect_uri=f"{base(request)}/auth/callback", next_url=target)
        except ProviderUnavailable as exc:
            _log.warning("identity provider unavailable", error=str(exc))
            return _failure(exc.reason + " Réessayez dans quelques minutes.", status=503, retry=target)
        except LoginFailed as exc:
            _log.warning("login cannot start", error=str(exc))
            return _failure(exc.reason, retry=target)
        store.add_login(auth.login)
        response = RedirectResponse(auth.url, status_code=303, headers=_NO_STORE)
        max_age = max(1, int((auth.login.expires_at - datetime.now(UTC)).total_seconds()))
        response.set_cookie(LOGIN_COOKIE, auth.login.state, max_age=max_age, path="/auth", httponly=True,
                            samesite="lax", secure=secure(request))
        return response

    @router.get("/callback", response_class=HTMLResponse)
    def callback(
        request: Request,
        state: Annotated[str | None, Query()] = None,
        code: Annotated[str | None, Query()] = None,
        error: Annotated[str | None, Query()] = None,
        error_description: Annotated[str | None, Query()] = None,
        iss: Annotated[str | None, Query()] = None,
    ) -> Response:
        """The provider's answer: check state, exchange the code, open the session, go back to ``next``."""
        expected = request.cookies.get(LOGIN_COOKIE)
        if not state or not expected or not secrets.compare_digest(state.encode(), expected.encode()):
            _log.warning("login callback refused: state does not match this browser's login")
            return _failure("La réponse du fournisseur d'identité ne correspond à aucune connexion commencée dans ce "
                            "navigateur (vérification « state » échouée).")
        pending = store.take_login(state)
        if pending is None:
            return _failure("Cette connexion a expiré ou a déjà été utilisée.")
        if error is not None:
            _log.info("identity provider refused the login", error=error[:64],
                      description=(error_description or "")[:200])
            reason = ("La connexion a été annulée." if error == "access_denied"
                      else f"Le fournisseur d'identité a refusé la connexion ({error[:64]}).")
            return _failure(reason, retry=pending.next_url)
        if iss is not None and iss != relying_party.issuer:
            _log.warning("login callback from another issuer", iss=iss)
            return _failure("La réponse ne vient pas du fournisseur d'identité configuré.", retry=pending.next_url)
        if not code:
            return _failure("La réponse du fournisseur d'identité est incomplète (pas de code).",
                            retry=pending.next_url)
        try:
            result = relying_party.redeem(code=code, login=pending)
        except ProviderUnavailable as exc:
            _log.warning("identity provider unavailable", error=str(exc))
            return _failure(exc.reason + " Réessayez dans quelques minutes.", status=503, retry=pending.next_url)
        except LoginFailed as exc:
            _log.warning("login failed", error=str(exc))
            return _failure(exc.reason, retry=pending.next_url)
        session = store.create(result.principal, result.access_token, result.expires_at)
        _log.info("user logged in", subject=result.principal.subject, rpps=result.principal.rpps,
                  expires_at=session.expires_at.isoformat())
        response = RedirectResponse(pending.next_url, status_code=303, headers=_NO_STORE)
        max_age = max(1, int((session.expires_at - store.now()).total_seconds()))
        response.set_cookie(SESSION_COOKIE, session.id, max_age=max_age, path="/", httponly=True, samesite="lax",
                            secure=secure(request))
        response.delete_cookie(LOGIN_COOKIE, path="/auth", httponly=True, samesite="lax", secure=secure(request))
        return response

    @router.post("/logout", response_class=HTMLResponse)
    def logout(request: Request) -> Response:
        """End the session on the server and forget the cookie."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            session = store.get(cookie)
            store.delete(cookie)
            if session is not None:
                _log.info("user logged out", subject=session.principal.subject)
        response = _page("Vous êtes déconnecté", ["Votre session sur ce nœud DRIMbox est terminée."], status=200)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure(request))
        return response

    return router


def install_browser_login(app: FastAPI, settings: NodeSettings, verifier: TokenVerifier | None) -> SessionStore | None:
    """Give the site face browser login when ``[oidc]`` names an issuer; ``None`` (nothing done) otherwise.

    Opens the session store (``{storage.data_dir}/sessions.sqlite``), sets ``app.state.session_store``
    (read by :func:`drimbox.trust.deps.authenticate`) and includes the public login routes. Without a
    verifier (dev mode) there is nothing to log in to: no routes, no store.
    """
    if settings.oidc.issuer is None or verifier is None:
        return None
    store = SessionStore.at(settings.storage.data_dir, max_ttl_s=settings.oidc.session_ttl_s)
    relying_party = OidcRelyingParty.from_settings(settings, verifier)
    app.state.session_store = store
    app.include_router(auth_router(relying_party, store, public_url=settings.oidc.public_url))
    return store
