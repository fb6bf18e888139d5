"""Test fixture: a DICOMweb node that can be told to break one rule at a time.

A real ASGI server (uvicorn, loopback) in front of a real Orthanc: it answers the content
negotiation as PS3.18 requires (400 malformed Accept, 406 nothing acceptable — Orthanc does not)
and forwards the rest, so with no fault every generic DICOMweb scenario passes; each switch in
:data:`FAULTS` breaks exactly one rule.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from drimbox.devnet.ports import free_port

FAULTS = {
    "answer-200-to-bad-accept": "forwards any Accept (no 406)",
    "accept-malformed-accept": "takes a malformed Accept as */*",
    "qido-lenient": "ignores invalid QIDO parameters",
    "qido-drop-instance": "QIDO instances omits one instance",
    "multipart-no-close": "WADO-RS multipart without its close delimiter",
    "wado-drop-instance": "WADO-RS series omits one instance",
    "declare-lossy-syntax": "declares transfer-syntax 1.2.840.10008.1.2.4.50 on lossless parts",
    "metadata-inline-pixels": "metadata carries pixel data inline",
    "slow-first-byte": "waits 3 s before answering a series",
}
_Q = re.compile(r"^(0(\.\d{0,3})?|1(\.0{0,3})?)$")
_DICOM_TS = {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.80", "*"}


def _ranges(accept: str) -> list[tuple[str, dict[str, str]]] | None:
    """Parsed media ranges; ``None`` when malformed."""
    out = []
    for item in filter(None, (p.strip() for p in accept.split(","))):
        media, *params = [p.strip() for p in item.split(";")]
        if "/" not in media:
            return None
        values = {}
        for param in params:
            name, _, value = param.partition("=")
            values[name.strip().lower()] = value.strip().strip('"')
        if "q" in values and not _Q.match(values["q"]):
            return None
        out.append((media.lower(), values))
    return out


def _acceptable(ranges: list[tuple[str, dict[str, str]]], *, metadata: bool) -> bool:
    for media, params in ranges:
        if media in ("*/*",) or (metadata and media in ("application/dicom+json", "application/json")):
            return True
        if not metadata and media == "multipart/related" and params.get("type", "application/dicom") == \
                "application/dicom" and params.get("transfer-syntax", "*") in _DICOM_TS:
            return True
    return False


def _app(upstream: str, fault: str | None) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def proxy(request: Request) -> Response:
        path = request.url.path
        query = dict(request.query_params)
        accept = request.headers.get("accept", "*/*")
        metadata = path.endswith("/metadata") or path.endswith(("/studies", "/series", "/instances"))
        ranges = _ranges(accept)
        if ranges is None and fault != "accept-malformed-accept":
            return Response(b'{"detail": "malformed Accept"}', 400, media_type="application/json")
        if ranges is not None and not _acceptable(ranges, metadata=metadata) and fault != "answer-200-to-bad-accept":
            return Response(b'{"detail": "nothing acceptable"}', 406, media_type="application/json")
        if "limit" in query and not query["limit"].isdigit():
            if fault != "qido-lenient":
                return Response(b'{"detail": "limit must be an integer"}', 400, media_type="application/json")
            query.pop("limit")
        if fault == "answer-200-to-bad-accept" and ranges is not None and not _acceptable(ranges, metadata=metadata):
            accept = "application/dicom+json" if metadata else 'multipart/related; type="application/dicom"'
        if not metadata and ("transfer-syntax=1.2.840.10008.1.2.4.80" in accept or "4.80" in accept):
            accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
        elif not metadata:
            accept = 'multipart/related; type="application/dicom"'
        if fault == "slow-first-byte" and "/series/" in path and not metadata:
            time.sleep(3)
        upstream_reply = await client.get(path, params=query, headers={"Accept": accept})
        body, headers = upstream_reply.content, {"Content-Type": upstream_reply.headers.get("content-type", "")}
        if upstream_reply.status_code == 200:
            body, headers = _break(fault, path, body, headers)
        return Response(body, upstream_reply.status_code, headers=headers)

    async def stow(request: Request) -> Response:
        reply = await client.post(request.url.path, content=await request.body(),
                                  headers={"Content-Type": request.headers["content-type"],
                                           "Accept": "application/dicom+json"})
        return Response(reply.content, reply.status_code, media_type=reply.headers.get("content-type"))

    return Starlette(routes=[Route("/dicom-web/studies", stow, methods=["POST"]),
                             Route("/dicom-web/{rest:path}", proxy, methods=["GET"])])


def _break(fault: str | None, path: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    content_type = headers["Content-Type"]
    if content_type.startswith("application/dicom+json"):
        items = json.loads(body)
        if fault == "qido-drop-instance" and path.endswith("/instances") and items:
            items = items[:-1]
        if fault == "metadata-inline-pixels" and path.endswith("/metadata"):
            for item in items:
                item["7FE00010"] = {"vr": "OW", "InlineBinary": "AAAA"}
        return json.dumps(items).encode(), headers
    if content_type.startswith("multipart/related"):
        boundary = re.search(r'boundary="?([^";]+)', content_type).group(1)  # type: ignore[union-attr]
        close = f"\r\n--{boundary}--".encode()
        if fault == "multipart-no-close":
            body = body.replace(close, b"")
        if fault == "wado-drop-instance":
            parts = body.split(f"\r\n--{boundary}".encode())
            if len(parts) > 2:
                body = f"\r\n--{boundary}".encode().join(parts[:-2] + parts[-1:])
        if fault == "declare-lossy-syntax":
            headers["Content-Type"] = re.sub(r";\s*transfer-syntax=[^;]+", "", content_type) + \
                "; transfer-syntax=1.2.840.10008.1.2.4.50"
    return body, headers


@contextmanager
def fault_node(upstream: str, fault: str | None) -> Iterator[str]:
    """Serve the node on loopback until the block ends; yields its DICOMweb root."""
    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(_app(upstream, fault), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fault node did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/dicom-web"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
