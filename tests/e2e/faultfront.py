"""Test fixture: the demo's site A behind a front that can be told to break one rule at a time.

Three real loopback servers make up "the node under test" for ``drimbox certify``:

* a **network face** (HTTPS, mutual TLS with the demo CA, site A's certificate, on site A's address)
  relaying to site A's network face — from the address its client connected from, with the test
  tool's certificate, so site A's own peer check, token binding and manifest scope decide;
* a **site face** (HTTP, site A's address) relaying to site A's site face;
* a **registry front** (HTTP, the registry's address) relaying to the registry, which rewrites what
  the node *published* (the KOS, its XDS metadata as MHD or ebRIM) — always the KOS's RetrieveURLs,
  which point at this front's network face, like a node behind a reverse proxy.

With no fault every scenario passes through the front; each switch of :data:`FAULTS` breaks exactly
one rule (a fault may fail several scenarios: the matrix in the test names which one it is for).
The front writes an ``endpoints.json`` of the same shape as the demo's (DESIGN §5) naming itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pydicom
import uvicorn
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from drimbox.config import NodeSettings
from drimbox.devnet.ports import free_port
from drimbox.errors import TrustListRejected
from drimbox.trust.trustlist import TrustListPolicy

__all__ = ["FAULTS", "FaultFront", "fault_front"]

FAULTS: dict[str, str] = {
    # what the node publishes (registry front)
    "kos-missing-content-date": "the KOS lacks ContentDate (Type 1)",
    "kos-wrong-issuer": "the KOS's IssuerOfPatientID is a local issuer, not the INS one",
    "kos-no-retrieve-url": "the KOS has no RetrieveURL",
    "kos-drop-instance": "the KOS omits one instance reference",
    "kos-wrong-accession": "the KOS's AccessionNumber is not the report's",
    "xds-wrong-type-code": "the entry's typeCode is the CDA's (11528-7), not IMG-KOS (MHD and ebRIM)",
    "xds-patient-local-id": "the entry's patient id is in a local namespace, not an INS OID",
    "xds-no-accession": "the entry's referenceIdList lacks the accession",
    "xds-author-not-rpps": "the entry's author is identified by a local id, not 8+RPPS",
    "registry-unsigned-list": "the registry publishes its trust list without signature",
    "registry-accepts-bad-submissions": "the registry answers Success to every ITI-41",
    # the node's network face
    "serve-without-token": "serves a request without a bearer token (straight from the PACS)",
    "accept-any-token": "serves any bearer token without verifying it (straight from the PACS)",
    "ignore-trust-list": "relays every peer from a listed address",
    "no-client-certificate": "does not require a client certificate",
    "install-unsigned-list": "installs the trust list it fetches without verifying it",
    "ignore-kos-header": "serves the network face straight from the PACS (no manifest scope, no audit)",
    "retrieve-drop-instance": "a RetrieveURL serves one instance less",
    "slow-first-byte": "waits 3 s before answering a series",
    # the consumer's site face
    "call-accepts-invalid-traits": "answers 303 to a contextual call whose traits it refused",
    "call-ignores-consent": "answers 303 to a contextual call without consent",
    "call-ins-in-location": "puts the INS in the Location of the contextual call's redirect",
    "portal-without-login": "shows the patient's page without login (with the last user's token)",
    "export-truncated": "the XDM export stops halfway",
}

_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding", "content-encoding",
        "keep-alive"}
_DS = "{http://www.w3.org/2000/09/xmldsig#}Signature"
_XML = etree.XMLParser(resolve_entities=False, no_network=True)


def _headers(source: Any) -> dict[str, str]:
    return {k: v for k, v in source.items() if k.lower() not in _HOP}


@dataclass
class _State:
    fault: str | None = None
    feed: str | None = None
    """A trust-list URL the front's network face polls (``--trust-list-feed``)."""
    last_site_token: str | None = None
    installed: frozenset[str] | None = None
    """Hosts of a list the network face took (only with ``install-unsigned-list``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Upstreams:
    registry: str
    site: str
    network: str
    pacs_dicomweb: str
    real_network_netloc: str


def _serve(app: Starlette, host: str, port: int, **ssl_options: Any) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                           lifespan="off", **ssl_options))
    thread = threading.Thread(target=server.run, daemon=True, name=f"fault-front-{port}")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"the fault front on {host}:{port} did not start"
        time.sleep(0.02)
    return server, thread


def _relay_app(handler: Callable[[Request], Awaitable[Response]]) -> Starlette:
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{rest:path}", handler, methods=methods)])


class FaultFront:
    """The three faces; :meth:`set` switches the fault (``None``: none)."""

    def __init__(self, endpoints: dict[str, Any], site_a: NodeSettings, workdir: Path) -> None:
        node = next(n for n in endpoints["nodes"] if n["name"] == "site-a")
        registry = endpoints["registry"]["base_url"].rstrip("/")
        self.state = _State()
        self.tls = endpoints["tls"]
        self.site_a = site_a
        self._policy = TrustListPolicy.from_settings(site_a.trust_list)
        address = urlsplit(node["base_url"]).hostname or "127.0.0.2"
        registry_host = urlsplit(registry).hostname or "127.0.0.4"
        ports = {"site": free_port(address), "network": free_port(address), "registry": free_port(registry_host)}
        self.site_url = f"http://{address}:{ports['site']}"
        self.network_url = f"https://{address}:{ports['network']}"
        self.registry_url = f"http://{registry_host}:{ports['registry']}"
        self.up = _Upstreams(registry=registry, site=node["base_url"].rstrip("/"),
                             network=node["network_dicomweb"].removesuffix("/dicom-web"),
                             pacs_dicomweb=f"{node['pacs']['rest'].rstrip('/')}/dicom-web",
                             real_network_netloc=urlsplit(node["network_dicomweb"]).netloc)
        tls = site_a.tls
        self._servers = [
            _serve(_relay_app(self._site), address, ports["site"]),
            _serve(_relay_app(self._network), address, ports["network"], ssl_certfile=str(tls.cert_file),
                   ssl_keyfile=str(tls.key_file), ssl_ca_certs=str(tls.ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED),
            _serve(_relay_app(self._registry), registry_host, ports["registry"]),
        ]
        self._network_tls: ssl.SSLContext = self._servers[1][0].config.ssl  # type: ignore[assignment]
        self._clients: dict[tuple[int, str], httpx.AsyncClient] = {}
        self._poller = threading.Thread(target=self._poll_feed, daemon=True, name="fault-front-feed")
        self._stop = threading.Event()
        self._poller.start()
        self.endpoints_file = workdir / "endpoints.json"
        self.endpoints_file.write_text(json.dumps(self._endpoints(endpoints), indent=2))

    def _endpoints(self, endpoints: dict[str, Any]) -> dict[str, Any]:
        mine = json.loads(json.dumps(endpoints))
        for key, value in list(mine["registry"].items()):
            mine["registry"][key] = str(value).replace(self.up.registry, self.registry_url)
        node = next(n for n in mine["nodes"] if n["name"] == "site-a")
        node.update(base_url=self.site_url, dicomweb=f"{self.site_url}/dicom-web", viewer=f"{self.site_url}/",
                    network_dicomweb=f"{self.network_url}/dicom-web")
        return mine

    # -- switches ----------------------------------------------------------------------------------

    def set(self, fault: str | None, *, feed: str | None = None) -> None:
        assert fault is None or fault in FAULTS, fault
        with self.state.lock:
            self.state.fault, self.state.feed, self.state.installed = fault, feed, None
        self._network_tls.verify_mode = ssl.CERT_OPTIONAL if fault == "no-client-certificate" else ssl.CERT_REQUIRED

    @property
    def fault(self) -> str | None:
        return self.state.fault

    def close(self) -> None:
        self._stop.set()
        for server, _ in self._servers:
            server.should_exit = True
        for _, thread in self._servers:
            thread.join(timeout=10)

    # -- upstream clients (one per event loop and source address) ----------------------------------

    def _client(self, local_address: str = "", *, mtls: bool = False) -> httpx.AsyncClient:
        key = (id(asyncio.get_running_loop()), f"{local_address}|{mtls}")
        if key not in self._clients:
            if mtls:
                context = ssl.create_default_context(cafile=self.tls["ca"])
                context.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
                transport = httpx.AsyncHTTPTransport(verify=context, local_address=local_address or None)
                self._clients[key] = httpx.AsyncClient(transport=transport, timeout=60, trust_env=False)
            else:
                self._clients[key] = httpx.AsyncClient(timeout=60, trust_env=False)
        return self._clients[key]

    @staticmethod
    async def _forward(client: httpx.AsyncClient, request: Request, url: str,
                       headers: dict[str, str] | None = None) -> httpx.Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return await client.request(request.method, url + query, content=await request.body(),
                                    headers=headers if headers is not None else _headers(request.headers))

    # -- site face ---------------------------------------------------------------------------------

    async def _site(self, request: Request) -> Response:
        fault, path = self.state.fault, request.url.path
        headers = _headers(request.headers)
        token = headers.get("authorization") or headers.get("Authorization")
        if token:
            self.state.last_site_token = token
        elif fault == "portal-without-login" and path.startswith("/portal/") and self.state.last_site_token:
            headers["Authorization"] = self.state.last_site_token
        body = await request.body()
        reply = await self._forward(self._client(), request, self.up.site + path, headers)
        out = _headers(reply.headers)
        if path == "/contextual-call":
            refused = {"call-accepts-invalid-traits": 400, "call-ignores-consent": 403}.get(fault or "")
            if refused == reply.status_code:
                return Response(b"", 303, headers={"Location": "/portal/patients/accepted-anyway"})
            if fault == "call-ins-in-location" and reply.status_code == 303:
                ins = re.search(rb"Patient\.identifier\.value=(\w+)", body)
                out["location"] += f"?ins={ins.group(1).decode() if ins else ''}"
        if fault == "export-truncated" and path == "/api/xdm/export":
            return Response(reply.content[:len(reply.content) // 2], reply.status_code, headers=out)
        return Response(reply.content, reply.status_code, headers=out)

    # -- network face ------------------------------------------------------------------------------

    async def _network(self, request: Request) -> Response:
        fault, installed = self.state.fault, self.state.installed
        peer = request.client.host if request.client else "127.0.0.1"
        if installed is not None and peer not in installed:
            return Response(b'{"detail": "peer not on the trust list"}', 403, media_type="application/json")
        headers = _headers(request.headers)
        token = headers.get("authorization") or headers.get("Authorization")
        path = request.url.path
        straight = (fault == "ignore-kos-header" or (fault == "serve-without-token" and not token)
                    or (fault == "accept-any-token" and token))
        if fault == "slow-first-byte" and "/series/" in path and not path.endswith("/metadata"):
            await asyncio.sleep(3)
        if straight:  # a node that skips its gate: the PACS answers whatever is asked
            pacs = {k: v for k, v in headers.items() if k.lower() == "accept"}
            reply = await self._forward(self._client(), request,
                                        self.up.pacs_dicomweb + path.removeprefix("/dicom-web"), pacs)
        else:
            local = "127.0.0.1" if fault == "ignore-trust-list" else peer
            reply = await self._forward(self._client(local, mtls=True), request, self.up.network + path, headers)
        body, out = reply.content, _headers(reply.headers)
        if fault == "retrieve-drop-instance" and reply.status_code == 200 and "/series/" in path:
            body = _drop_last_part(body, out.get("content-type", ""))
        return Response(body, reply.status_code, headers=out)

    def _poll_feed(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            while not self._stop.wait(0.3):
                feed, fault = self.state.feed, self.state.fault
                if feed is None:
                    continue
                try:
                    listed = client.get(feed).content
                except httpx.HTTPError:
                    continue
                if fault == "install-unsigned-list":
                    root = etree.fromstring(listed, _XML)
                    hosts = frozenset(str(e.text) for e in root.iter()
                                      if isinstance(e.tag, str) and etree.QName(e).localname == "db")
                    with self.state.lock:
                        self.state.installed = hosts
                    continue
                try:  # the node's own verification: a corrupted list is refused, the last good one stays
                    self._policy.update(listed, source=feed)
                except TrustListRejected:
                    pass

    # -- registry ----------------------------------------------------------------------------------

    async def _registry(self, request: Request) -> Response:
        fault, path = self.state.fault, request.url.path
        if fault == "registry-accepts-bad-submissions" and path.endswith("/xds/repository") \
                and request.method == "POST":
            return _soap_success(await request.body(), request.headers.get("content-type", ""))
        reply = await self._forward(self._client(), request, self.up.registry + path)
        body, out = reply.content, _headers(reply.headers)
        content_type = out.get("content-type", "")
        if path.endswith("/whitelist") and fault == "registry-unsigned-list" and reply.status_code == 200:
            root = etree.fromstring(body, _XML)
            for signature in root.findall(_DS):
                root.remove(signature)
            body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        elif content_type.startswith("application/dicom") and reply.status_code == 200:
            body = self._kos(body, fault)
        elif "json" in content_type:
            body = self._mhd(body.decode().replace(self.up.registry, self.registry_url), fault).encode()
        elif path.endswith("/xds/registry") and fault == "xds-author-not-rpps":
            body = re.sub(rb"<rim:Value>8(\d{11})\^", rb"<rim:Value>LOCAL\1^", body)
        elif path.endswith("/xds/registry") and fault == "xds-wrong-type-code":
            body = body.replace(b'nodeRepresentation="IMG-KOS"', b'nodeRepresentation="11528-7"')
        return Response(body, reply.status_code, headers=out)

    def _kos(self, blob: bytes, fault: str | None) -> bytes:
        kos = pydicom.dcmread(io.BytesIO(blob))
        front = urlsplit(self.network_url).netloc
        for study in kos.get("CurrentRequestedProcedureEvidenceSequence", []):
            for series in study.get("ReferencedSeriesSequence", []):
                if "RetrieveURL" in series:
                    series.RetrieveURL = str(series.RetrieveURL).replace(self.up.real_network_netloc, front)
                    if fault == "kos-no-retrieve-url":
                        del series.RetrieveURL
                if fault == "kos-drop-instance" and len(series.ReferencedSOPSequence) > 1:
                    del series.ReferencedSOPSequence[-1]
        if fault == "kos-missing-content-date":
            del kos.ContentDate
        if fault == "kos-wrong-issuer":
            kos.IssuerOfPatientID = "HOPITAL-LOCAL"
        if fault == "kos-wrong-accession":
            kos.AccessionNumber = "FAULT0000"
        out = io.BytesIO()
        kos.save_as(out, enforce_file_format=True)
        return out.getvalue()

    @staticmethod
    def _mhd(text: str, fault: str | None) -> str:
        if fault not in ("xds-wrong-type-code", "xds-patient-local-id", "xds-no-accession"):
            return text
        value = json.loads(text)
        for entry in value.get("entry", []) if isinstance(value, dict) else []:
            doc = entry.get("resource", {})
            if doc.get("content", [{}])[0].get("attachment", {}).get("contentType") != "application/dicom":
                continue
            if fault == "xds-wrong-type-code":
                doc["type"] = {"coding": [{"system": "http://loinc.org", "code": "11528-7"}]}
            if fault == "xds-patient-local-id":
                doc["subject"]["identifier"]["system"] = "urn:oid:1.2.250.1.999.1.1.1"
            if fault == "xds-no-accession":
                related = doc.get("context", {}).get("related", [])
                doc["context"]["related"] = [r for r in related if "^^^" not in json.dumps(r)
                                             and "accession" not in json.dumps(r).lower()]
        return json.dumps(value)


def _drop_last_part(body: bytes, content_type: str) -> bytes:
    found = re.search(r'boundary="?([^";]+)', content_type)
    if not found:
        return body
    delimiter = f"\r\n--{found.group(1)}".encode()
    parts = body.split(delimiter)
    return delimiter.join(parts[:-2] + parts[-1:]) if len(parts) > 2 else body


def _soap_success(request: bytes, content_type: str) -> Response:
    """A RegistryResponse of Success to whatever was submitted (a registry that validates nothing)."""
    relates = re.search(rb"<(?:\w+:)?MessageID[^>]*>([^<]+)<", request)
    message = (
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
        '<s:Header><a:Action s:mustUnderstand="1">urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse</a:Action>'
        f'<a:RelatesTo>{relates.group(1).decode() if relates else ""}</a:RelatesTo></s:Header><s:Body>'
        '<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
        'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/></s:Body></s:Envelope>')
    return Response(message.encode(), 200, media_type="application/soap+xml")


@contextmanager
def fault_front(endpoints: dict[str, Any], site_a: NodeSettings, workdir: Path) -> Iterator[FaultFront]:
    """Serve the front until the block ends."""
    front = FaultFront(endpoints, site_a, workdir)
    try:
        yield front
    finally:
        front.close()
