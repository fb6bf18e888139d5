"""Serving OHIF at the site face's root (F9).

What is public and what is not:

- **Static assets** (JavaScript bundles, CSS, fonts, WebAssembly codecs, icons) are the npm package's
  files, identical on every node: they carry no patient data, so they are served without
  authentication (a login page could even reuse them). They are enumerated from ``dist/`` when the
  router is built, one route per top-level entry, so a path that is not a shipped file never reaches
  the disk.
- **The HTML entry** (``index.html``, answered for ``/viewer`` and every other client-side route of the
  single-page app) requires a logged-in user: without a session the browser is sent to the login,
  which brings it back to the same URL. The images themselves come from ``/dicom-web``, which is
  authenticated on its own (the session cookie travels with OHIF's same-origin fetches).
- ``/app-config.js`` is generated from the settings (:mod:`drimbox.viewer.config_js`); the shipped
  one is never served.
- The node's own prefixes (:data:`NODE_PREFIXES`) never fall back to ``index.html``: an unknown API
  path is a 404, not an HTML page that a client would try to parse.

Include the router **after** every other router of the site app (:func:`mount_viewer` does it), since
its catch-all route answers whatever nothing else matched.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the route
signatures at run time, and the login dependency is a value of the factory's closure.
"""

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, get_args

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from drimbox.config import NodeSettings
from drimbox.errors import LoginRequired
from drimbox.viewer.config_js import app_config_js
from drimbox.viewer.dist import ohif_dist

__all__ = [
    "IMMUTABLE",
    "NODE_PREFIXES",
    "SESSION_COOKIE",
    "ViewerLogin",
    "mount_viewer",
    "require_session_present",
    "viewer_router",
]

NODE_PREFIXES: Final = ("/api", "/dicom-web", "/auth", "/healthz", "/portal", "/contextual-call", "/exams",
                        "/web", "/wado", "/metrics", "/docs", "/openapi.json", "/redoc")
"""Paths of the node itself: never answered with OHIF's ``index.html`` (unknown ones are 404)."""

SESSION_COOKIE: Final = "drimbox_session"
"""The browser session cookie (set by the node's login, :mod:`drimbox.trust`)."""

IMMUTABLE: Final = "public, max-age=31536000, immutable"
"""Cache-Control of content-hashed files: their name changes whenever their content does."""
_REVALIDATE: Final = "no-cache"
_ENTRY_CACHE: Final = "private, no-cache"

# OHIF's build names bundles <chunk>.bundle.<16 hex>.js and codecs/fonts <16 hex>.wasm|woff2.
_HASHED: Final = re.compile(r"(^|\.)[0-9a-f]{16}\.(js|mjs|css|wasm|woff2?|map)$")
_MEDIA_TYPES: Final = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}
# Shipped files that are not served: the demo-server configuration (replaced by ours), static-host
# rewrite rules, and the entry (answered by the login-protected catch-all).
_NOT_SERVED: Final = frozenset({"app-config.js", "index.html", "_headers", "_redirects", "serve.json"})

ViewerLogin = Callable[..., Any]
"""A FastAPI dependency that returns the browser's principal or raises :class:`LoginRequired`."""


def require_session_present(request: Request) -> None:
    """Fallback login check used while :mod:`drimbox.trust.deps` has no ``BrowserPrincipal``.

    TODO(trust): only checks that a session cookie or a bearer token is *present*; the real check
    (session looked up, token verified) is ``drimbox.trust.deps.BrowserPrincipal``, which
    :func:`viewer_router` picks up automatically once it exists. Harmless meanwhile because the HTML
    entry holds no data and every DICOMweb request is verified by the site face's own dependency.
    """
    if request.app.state.token_verifier is None:  # dev mode: every caller is the developer
        return
    if request.cookies.get(SESSION_COOKIE) or request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginRequired("log in to open the viewer", next_url=target)


def _default_login() -> ViewerLogin:
    """``drimbox.trust.deps.BrowserPrincipal``'s dependency when it exists, else the presence check."""
    deps = importlib.import_module("drimbox.trust.deps")
    annotated = getattr(deps, "BrowserPrincipal", None)
    if annotated is None:
        return require_session_present
    dependency: ViewerLogin = get_args(annotated)[1].dependency
    return dependency


def _media_type(path: Path) -> str | None:
    return _MEDIA_TYPES.get(path.suffix.lower())


def _file(path: Path) -> FileResponse:
    cache = IMMUTABLE if _HASHED.search(path.name) else _REVALIDATE
    return FileResponse(path, media_type=_media_type(path), headers={"Cache-Control": cache})


def _not_found(request: Request) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": "Not Found", "status": 404,
                         "detail": f"no resource at {request.url.path}", "instance": request.url.path},
                        status_code=404, media_type="application/problem+json")


def _static_file_route(router: APIRouter, url: str, path: Path) -> None:
    @router.api_route(url, methods=["GET", "HEAD"], include_in_schema=False)
    def static_file() -> FileResponse:
        return _file(path)


def _static_dir_route(router: APIRouter, name: str, root: Path) -> None:
    @router.api_route(f"/{name}/{{rest:path}}", methods=["GET", "HEAD"], include_in_schema=False)
    def static_dir(rest: str, request: Request) -> Response:
        target = (root / rest).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return _not_found(request)
        return _file(target)


def _node_prefix_route(router: APIRouter, prefix: str) -> None:
    @router.api_route(prefix, methods=["GET", "HEAD"], include_in_schema=False)
    @router.api_route(f"{prefix}/{{rest:path}}", methods=["GET", "HEAD"], include_in_schema=False)
    def node_path_not_found(request: Request) -> JSONResponse:
        return _not_found(request)


def viewer_router(settings: NodeSettings, *, login: ViewerLogin | None = None, dist: Path | None = None) -> APIRouter:
    """OHIF's files at the root, the generated ``/app-config.js``, and the login-protected SPA entry.

    Include with ``app.include_router`` (not ``include_protected``: assets are public, the entry has its
    own login dependency), after every other router. ``login`` defaults to ``BrowserPrincipal`` of
    :mod:`drimbox.trust.deps` (or :func:`require_session_present` until it exists); ``dist`` defaults to
    :func:`~drimbox.viewer.dist.ohif_dist`.

    Raises
    ------
    ConfigError
        When OHIF is not installed where the settings say.
    """
    root = dist.resolve() if dist is not None else ohif_dist(settings)
    login_dep = login or _default_login()
    config_js = app_config_js(settings)
    router = APIRouter(tags=["viewer"])

    @router.api_route("/app-config.js", methods=["GET", "HEAD"], include_in_schema=False)
    def app_config() -> Response:
        return Response(config_js, media_type="text/javascript", headers={"Cache-Control": _REVALIDATE})

    for entry in sorted(root.iterdir()):
        if entry.name in _NOT_SERVED or entry.name.startswith("."):
            continue
        if entry.is_dir():
            _static_dir_route(router, entry.name, entry.resolve())
        elif entry.is_file():
            _static_file_route(router, f"/{entry.name}", entry.resolve())
    for prefix in NODE_PREFIXES:
        _node_prefix_route(router, prefix)

    index = root / "index.html"

    @router.api_route("/{path:path}", methods=["GET", "HEAD"], dependencies=[Depends(login_dep)],
                      include_in_schema=False)
    def viewer_entry(path: str) -> FileResponse:
        """OHIF's ``index.html`` for ``/viewer`` and any other client-side route (SPA fallback)."""
        return FileResponse(index, media_type="text/html; charset=utf-8", headers={"Cache-Control": _ENTRY_CACHE})

    return router


def mount_viewer(app: FastAPI, settings: NodeSettings, *, login: ViewerLogin | None = None,
                 dist: Path | None = None) -> None:
    """Include :func:`viewer_router` in the site app; call it last (its catch-all answers the rest)."""
    app.include_router(viewer_router(settings, login=login, dist=dist))
