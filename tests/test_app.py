"""The node's HTTP faces: every route behind the one authentication dependency, errors as problem details."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter
from fastapi.testclient import TestClient

from drimbox.app import PUBLIC_PATHS, create_network_app, create_site_app
from drimbox.config import AuthSettings, DimseSettings, LocalAE, RemoteAE
from drimbox.devnet.ports import free_port
from drimbox.pacs import PacsClient
from drimbox.trust import JwtVerifier, mint_token

ISSUER = "urn:test:idp"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    """The test issuer's key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture()
def dead_pacs() -> Iterator[PacsClient]:
    """A PACS client whose peer does not listen (nothing on that port)."""
    remote = RemoteAE(aet="NOBODY", host="127.0.0.1", port=free_port(), timeout_s=2)
    client = PacsClient(local=LocalAE(aet="TEST"), remote=remote, dimse=DimseSettings(connect_timeout_s=2))
    yield client
    client.close()


def _site_client(key: ec.EllipticCurvePrivateKey, pacs: PacsClient) -> TestClient:
    verifier = JwtVerifier(AuthSettings(issuer=ISSUER), key.public_key())
    return TestClient(create_site_app(node_name="t", verifier=verifier, pacs=pacs, pacs_label="NOBODY"))


def _leaky_router() -> APIRouter:
    router = APIRouter()

    @router.get("/leak/{study}")
    def leak(study: str) -> dict[str, str]:  # forgets to ask for the principal
        return {"patient": "data"}

    return router


def _operations(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    return [(method.upper(), path.replace("{", "").replace("}", ""))
            for path, item in schema["paths"].items() for method in item]


@pytest.mark.parametrize("face", ["site", "network"])
def test_every_operation_but_liveness_requires_a_token(
    face: str, key: ec.EllipticCurvePrivateKey, dead_pacs: PacsClient
) -> None:
    verifier = JwtVerifier(AuthSettings(issuer=ISSUER), key.public_key())
    if face == "site":
        app = create_site_app(node_name="t", verifier=verifier, pacs=dead_pacs, pacs_label="x",
                              extra_routers=(_leaky_router(),))
    else:
        app = create_network_app(node_name="t", verifier=verifier, extra_routers=(_leaky_router(),))
    with TestClient(app) as client:
        operations = _operations(client)
        assert ("GET", "/leak/study") in operations
        for method, path in operations:
            status = client.request(method, path).status_code
            assert status == (200 if path in PUBLIC_PATHS else 401), (method, path)
        schema = client.get("/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_missing_and_bad_tokens_get_401_problem(key: ec.EllipticCurvePrivateKey, dead_pacs: PacsClient) -> None:
    with _site_client(key, dead_pacs) as client:
        assert client.get("/healthz").status_code == 200
        for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer garbage"}):
            response = client.get("/api/whoami", headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.json()["status"] == 401


def test_valid_token(key: ec.EllipticCurvePrivateKey, dead_pacs: PacsClient) -> None:
    token = mint_token(key, issuer=ISSUER, audience="drimbox", subject="rpps:10101010101", rpps="10101010101")
    with _site_client(key, dead_pacs) as client:
        response = client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["rpps"] == "10101010101"


def test_unreachable_pacs_is_503_with_retry_after(key: ec.EllipticCurvePrivateKey, dead_pacs: PacsClient) -> None:
    token = mint_token(key, issuer=ISSUER, audience="drimbox", subject="s")
    with _site_client(key, dead_pacs) as client:
        response = client.post("/api/pacs/echo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "NOBODY" in response.json()["detail"] or "127.0.0.1" in response.json()["detail"]


def test_dev_mode_is_explicit(dead_pacs: PacsClient) -> None:
    with TestClient(create_site_app(node_name="t", verifier=None, pacs=dead_pacs, pacs_label="x")) as client:
        assert client.get("/api/whoami").json()["kind"] == "developer"
