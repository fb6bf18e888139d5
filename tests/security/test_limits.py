"""HTTP limits (issue 7, hostile input): the node's faces and the registry refuse oversized input with
a 4xx problem before any route runs — never a 500, never an unbounded read.

In-process apps (Starlette's test client) for the rules; one real uvicorn server on loopback for what
only a server shows: a chunked body without ``Content-Length`` cut at the limit, and the h11 head limit.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from drimbox.app import create_network_app, create_site_app
from drimbox.devnet.ports import free_port
from drimbox.limits import HttpLimits, LimitsMiddleware, node_http_limits, uvicorn_limits
from registry.limits import registry_http_limits


class _NoPacs:
    def echo(self) -> None:
        """Never called by these tests."""


def _site(limits: HttpLimits | None = None) -> FastAPI:
    return create_site_app(node_name="t", verifier=None, pacs=_NoPacs(), pacs_label="none", limits=limits)


def _echo_app(limits: HttpLimits) -> FastAPI:
    """An app whose route reads the whole body (what a careless route would do)."""
    app = FastAPI()
    app.add_middleware(LimitsMiddleware, limits=limits)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/dicom-web/studies")
    async def stow(request: Request) -> dict[str, int]:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        return {"received": total}

    return app


def _assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


def test_limits_apply_to_both_faces_before_authentication() -> None:
    """The site face in dev mode and the network face (tokens required) both refuse before auth."""
    for app in (_site(), create_network_app(node_name="t", verifier=None)):
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            _assert_problem(client.get("/healthz?" + "a" * 9000), 414)
            _assert_problem(client.get("/healthz?" + "&".join(f"p{i}=1" for i in range(300))), 400)
            _assert_problem(client.get("/healthz", headers={f"x-h{i}": "v" for i in range(120)}), 431)
            _assert_problem(client.get("/healthz", headers={"x-big": "v" * 9000}), 431)
            _assert_problem(client.get("/healthz", headers={f"x-h{i}": "v" * 7000 for i in range(6)}), 431)
            _assert_problem(client.post("/api/whoami", content=b"x" * (1024 * 1024 + 1)), 413)
            _assert_problem(client.post("/api/whoami", content=b"x", headers={"content-length": "abc"}), 400)


def test_stow_and_xdm_routes_have_their_larger_limits() -> None:
    limits = node_http_limits(max_stow_bytes=3 * 1024 * 1024, max_xdm_bytes=2 * 1024 * 1024)
    assert limits.body_limit("POST", "/dicom-web/studies") == 3 * 1024 * 1024
    assert limits.body_limit("POST", "/dicom-web/studies/1.2.3") == 3 * 1024 * 1024
    assert limits.body_limit("POST", "/dicom-web/studies/1.2.3/series") == 1024 * 1024
    assert limits.body_limit("POST", "/api/xdm/import") == 2 * 1024 * 1024
    assert limits.body_limit("GET", "/api/xdm/import") == 1024 * 1024
    with TestClient(_echo_app(limits)) as client:
        assert client.post("/dicom-web/studies", content=b"x" * (2 * 1024 * 1024)).json() == {"received": 2 << 20}
        _assert_problem(client.post("/dicom-web/studies", content=b"x" * (3 * 1024 * 1024 + 1)), 413)
        _assert_problem(client.post("/echo", content=b"x" * (2 * 1024 * 1024)), 413)


def test_chunked_body_is_counted_not_trusted() -> None:
    """No Content-Length: the body is cut when the count passes the limit and the route's answer dropped."""
    limits = HttpLimits(max_body_bytes=64 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"y" * 4096

    with TestClient(_echo_app(limits)) as client:
        _assert_problem(client.post("/echo", content=chunks()), 413)
        assert client.post("/echo", content=iter([b"z" * 1000])).json() == {"received": 1000}


def test_registry_limits() -> None:
    limits = registry_http_limits(8 * 1024 * 1024)
    # Above the SOAP route's own limit, which answers with a SOAP Fault (tests/registry/test_registry_soap.py).
    assert limits.body_limit("POST", "/xds/repository") == 17 * 1024 * 1024
    assert limits.body_limit("POST", "/xds/registry") == 17 * 1024 * 1024
    assert limits.body_limit("POST", "/fhir/DocumentReference") == 64 * 1024


@pytest.fixture()
def served_echo() -> Iterator[str]:
    """The echo app under a real uvicorn (h11, the node's server arguments) on loopback."""
    limits = HttpLimits(max_body_bytes=256 * 1024)
    port = free_port()
    config = uvicorn.Config(_echo_app(limits), host="127.0.0.1", port=port, log_config=None, access_log=False,
                            lifespan="off", **uvicorn_limits(limits))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_real_server_cuts_a_chunked_body_and_bounds_the_head(served_echo: str) -> None:
    def endless() -> Iterator[bytes]:
        for _ in range(10_000):  # 640 MiB if anyone read it all
            yield b"q" * 65536

    with httpx.Client(timeout=10) as client:
        assert client.post(f"{served_echo}/echo", content=b"a" * 1000).json() == {"received": 1000}
        started = time.monotonic()
        try:
            response = client.post(f"{served_echo}/echo", content=endless())
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the client was still sending: also refused
        else:
            _assert_problem(response, 413)
        assert time.monotonic() - started < 10
        _assert_problem(client.get(f"{served_echo}/echo", headers={"x-big": "v" * 9000}), 431)
    # Past h11's head limit the server itself refuses (400) without buffering more.
    host, port = served_echo.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 100_000 + b"\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
