"""A trust-list feed the kit serves for the node under test to fetch (F11 fault cases).

The node's trust-list URL points at this feed for the run. Each fetch gets the next corrupted
variant (in turn); the feed records which variant each fetch got and when, so a scenario can wait
for the node to have fetched each one, then observe that the node kept its last good list.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree

from drimbox.certify.target import HostPort

__all__ = ["TrustListFeed", "corrupted_variants"]

_DS = "{http://www.w3.org/2000/09/xmldsig#}Signature"


def _relabel(root: etree._Element) -> None:
    """Point every ``db`` host elsewhere: a node that took the list would refuse every peer it had."""
    hosts = [e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "db"]
    for index, element in enumerate(hosts):
        element.text = f"db{index + 1}.corrupted.invalid"


def corrupted_variants(signed: bytes) -> dict[str, bytes]:
    """From the genuine signed list: the unsigned list and a list changed after signing."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    unsigned = etree.fromstring(signed, parser)
    for signature in unsigned.findall(_DS):
        unsigned.remove(signature)
    _relabel(unsigned)
    tampered = etree.fromstring(signed, parser)
    _relabel(tampered)  # the ds:Signature is kept: it no longer matches
    return {"unsigned list (signature removed)": etree.tostring(unsigned, xml_declaration=True, encoding="UTF-8"),
            "signed list with its db hosts changed after signing": etree.tostring(tampered, xml_declaration=True,
                                                                               encoding="UTF-8")}


@dataclass(slots=True)
class Fetch:
    variant: str
    at: float
    peer: str


@dataclass(slots=True)
class _State:
    variants: list[tuple[str, bytes]] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class TrustListFeed:
    """Serve ``variants`` in turn at ``http://HOST:PORT/…`` (any path) until :meth:`close`."""

    def __init__(self, where: HostPort, variants: dict[str, bytes]) -> None:
        state = _State(list(variants.items()))
        self.state = state

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with state.lock:
                    name, body = state.variants[len(state.fetches) % len(state.variants)]
                    state.fetches.append(Fetch(name, time.monotonic(), self.client_address[0]))
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer((where.host, where.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="certify-trust-feed", daemon=True)
        self._thread.start()

    def fetched(self) -> list[Fetch]:
        with self.state.lock:
            return list(self.state.fetches)

    def wait_for(self, count: int, timeout_s: float) -> list[Fetch]:
        """Wait until the node has fetched ``count`` times (or the timeout); return the fetches."""
        deadline = time.monotonic() + timeout_s
        while len(self.fetched()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.fetched()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
