"""The viewer router: public assets, login-protected entry, SPA fallback, node prefixes, generated config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from drimbox.config import NodeSettings, load_settings
from drimbox.errors import ConfigError
from drimbox.http_errors import install_error_handlers
from drimbox.viewer import (
    IMMUTABLE,
    NODE_PREFIXES,
    ViewerLogin,
    app_config,
    default_ohif_dist,
    mount_viewer,
    ohif_dist,
    require_session_present,
)

_BUNDLE = "app.bundle.0f6159c501addfe9.js"
_WASM = "0ddf166f7a343eda.wasm"


@pytest.fixture()
def dist(tmp_path: Path) -> Path:
    """A miniature OHIF dist/ with the kinds of files the real one ships."""
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script src="/app-config.js"></script>')
    (root / "app-config.js").write_text("window.config = {demo: 'https://d14fa38qiwhyfd.cloudfront.net'};")
    (root / _BUNDLE).write_text("console.log('ohif');")
    (root / _WASM).write_bytes(b"\0asm\1\0\0\0")
    (root / "app.bundle.css").write_text("body{}")
    (root / "_redirects").write_text("/* /index.html 200")
    (root / "assets" / "favicon.ico").write_bytes(b"ico")
    (tmp_path / "secret.txt").write_text("outside dist")
    return root


def _settings(dist: Path | None, **extra: object) -> NodeSettings:
    viewer = {"ohif_dist": dist} if dist is not None else {}
    return load_settings(None, name="site-b", pacs={"aet": "ORTHANC", "host": "127.0.0.1", "port": 4242},
                         viewer=viewer, **extra)


def _client(settings: NodeSettings, *, dev_mode: bool, login: ViewerLogin | None = None) -> TestClient:
    app = FastAPI()
    app.state.token_verifier = None if dev_mode else object()
    install_error_handlers(app)

    @app.get("/api/whoami")
    def whoami() -> dict[str, str]:
        return {"subject": "x"}

    mount_viewer(app, settings, login=login)
    return TestClient(app, follow_redirects=False)


def test_assets_are_public_with_types_and_cache(dist: Path) -> None:
    client = _client(_settings(dist), dev_mode=False)
    bundle = client.get(f"/{_BUNDLE}")
    assert bundle.status_code == 200 and bundle.headers["cache-control"] == IMMUTABLE
    assert bundle.headers["content-type"].startswith("text/javascript")
    wasm = client.get(f"/{_WASM}")
    assert wasm.headers["content-type"] == "application/wasm" and wasm.headers["cache-control"] == IMMUTABLE
    css = client.get("/app.bundle.css")  # not content-hashed: revalidated
    assert css.status_code == 200 and css.headers["cache-control"] == "no-cache"
    assert client.get("/assets/favicon.ico").status_code == 200
    assert client.head(f"/{_BUNDLE}").status_code == 200


def test_generated_config_replaces_the_shipped_one(dist: Path) -> None:
    settings = _settings(dist)
    body = _client(settings, dev_mode=False).get("/app-config.js")
    assert body.status_code == 200 and "cloudfront" not in body.text
    start = body.text.index("window.config = ") + len("window.config = ")
    config = json.loads(body.text[start:body.text.index("};\n") + 1])
    assert config == app_config(settings)
    source = config["dataSources"][0]["configuration"]
    assert source["qidoRoot"] == source["wadoRoot"] == "/dicom-web"
    assert config["showStudyList"] is False
    assert config["investigationalUseDialog"] == {"option": "never"}
    assert "shownTours" in body.text


def test_entry_requires_login_and_comes_back(dist: Path) -> None:
    """With the node's BrowserPrincipal (the default): no session → login, and back to the same URL."""
    client = _client(_settings(dist), dev_mode=False)
    url = "/viewer?StudyInstanceUIDs=1.2.3&hangingProtocolId=@ohif/hpMammo"
    for cookie in (None, "not-a-session"):
        if cookie:
            client.cookies.set("drimbox_session", cookie)
        response = client.get(url)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/auth/login?next=%2Fviewer%3FStudyInstanceUIDs%3D1.2.3")
    assert client.get(f"/{_BUNDLE}").status_code == 200  # assets stay public


def test_entry_with_an_injected_login_check(dist: Path) -> None:
    client = _client(_settings(dist), dev_mode=False, login=require_session_present)
    assert client.get("/viewer").status_code == 303
    client.cookies.set("drimbox_session", "s")
    with_session = client.get("/viewer")
    assert with_session.status_code == 200 and with_session.text.startswith("<!doctype html>")
    assert "no-cache" in with_session.headers["cache-control"]


def test_spa_fallback_but_not_for_node_prefixes(dist: Path) -> None:
    client = _client(_settings(dist), dev_mode=True)
    assert client.get("/viewer/dicomweb").text.startswith("<!doctype html>")
    assert client.get("/segmentation?StudyInstanceUIDs=1").status_code == 200
    assert client.get("/api/whoami").json() == {"subject": "x"}  # earlier routes win
    for prefix in NODE_PREFIXES:
        for path in (prefix, f"{prefix}/nope/deeper"):
            response = client.get(path)
            if prefix in ("/docs", "/openapi.json", "/redoc") and path == prefix:
                continue  # FastAPI's own pages
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"


def test_no_traversal_and_no_shipped_rewrites(dist: Path) -> None:
    client = _client(_settings(dist), dev_mode=True)
    assert "outside dist" not in client.get("/assets/%2e%2e/%2e%2e/secret.txt").text
    assert client.get("/assets/missing.png").status_code == 404
    assert client.get("/_redirects").text.startswith("<!doctype html>")  # not the shipped file


def test_missing_dist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ohif_dist(_settings(tmp_path / "nowhere"))
    assert info.value.key == "viewer.ohif_dist" and "nowhere" in str(info.value)


def test_default_dist_is_the_installed_one() -> None:
    assert (default_ohif_dist() / "index.html").is_file(), "OHIF is not installed: run scripts/setup.sh"
    path = ohif_dist(_settings(None))
    assert path == default_ohif_dist().resolve()
    client = _client(_settings(None), dev_mode=True)
    assert client.get("/viewer").text.count("app-config.js") == 1
