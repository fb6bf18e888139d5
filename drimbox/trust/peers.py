"""Which remote nodes the consumer side may talk to, and the HTTPS client it talks to them with.

A RetrieveURL is followed only when its host is on the trust list (DESIGN §2b, F11). Until the
signed national list is wired in (trust issue), the list is the static ``[peers] hosts`` setting;
:class:`PeerPolicy` is the seam the signed list plugs into.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from fastapi import Request

from drimbox.config import NodeSettings
from drimbox.errors import ConfigError, Forbidden, UntrustedPeer
from drimbox.ops.request_id import request_id_hooks
from drimbox.trust.audit import AuditEvent, AuditTrail

__all__ = [
    "HostListPolicy",
    "InboundPolicy",
    "PeerPolicy",
    "inbound_peer_check",
    "network_client",
    "network_ssl_context",
]


class PeerPolicy(Protocol):
    """Decides whether a URL on another node may be followed."""

    def check_url(self, url: str) -> None:
        """Return when ``url``'s host is a trust-listed node; raise :class:`UntrustedPeer` otherwise."""
        ...


class HostListPolicy:
    """A static trust list of hosts (``[peers] hosts``); https only."""

    def __init__(self, hosts: tuple[str, ...] | list[str]) -> None:
        self.hosts = frozenset(h.lower() for h in hosts)

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https":
            raise UntrustedPeer(f"{url}: only https URLs of trust-listed nodes are followed", host=host)
        if host not in self.hosts:
            raise UntrustedPeer(f"{url}: host {host!r} is not on the trust list", host=host)


def network_ssl_context(settings: NodeSettings) -> ssl.SSLContext:
    """Client TLS context for node-to-node calls: the node's certificate, the network's CA(s)."""
    tls = settings.tls
    if tls.ca_file is None or tls.cert_file is None or tls.key_file is None:
        raise ConfigError("tls: ca_file, cert_file and key_file are required to call other nodes (mutual TLS)",
                          key="tls.cert_file")
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def network_client(settings: NodeSettings, *, timeout_s: float | None = None,
                   transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An ``httpx.Client`` for other nodes' network faces (mutual TLS, bounded timeouts, no redirects)."""
    timeout = timeout_s if timeout_s is not None else settings.retrieve.timeout_s
    context = network_ssl_context(settings)
    if transport is None and settings.peers.source_address:
        # Peers know this node by the address it connects from (the trust list's db host).
        transport = httpx.HTTPTransport(verify=context, local_address=settings.peers.source_address)
    # The request id of the request being handled goes along (node → node).
    return httpx.Client(verify=context, timeout=httpx.Timeout(timeout, connect=10.0),
                        follow_redirects=False, transport=transport, event_hooks=request_id_hooks())


class InboundPolicy(Protocol):
    """Decides whether a peer that connected to the network face is a trust-listed node."""

    def is_trusted_host(self, host: str) -> bool: ...


def inbound_peer_check(policy: InboundPolicy, audit: AuditTrail | None = None) -> Callable[[Request], None]:
    """A FastAPI dependency of the network face: the connecting address must be the ``db`` host of a node
    on the trust list in force (DESIGN §2b) — a certificate from the right CA is not enough.

    The check is by the peer's address: every node has its own, and the TLS layer has already verified
    that the peer holds a certificate of the network's CA. Refusals are 403 and audited.
    """

    def check_peer(request: Request) -> None:
        host = request.client.host if request.client is not None else ""
        if not policy.is_trusted_host(host):
            if audit is not None:
                audit.record(AuditEvent(action="network.peer", outcome="refused", source=host,
                                        detail=f"{host} is not on the trust list"))
            raise Forbidden(f"peer {host or '?'} is not a node on the trust list")

    return check_peer
