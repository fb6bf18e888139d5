"""Who presents a request on the network face: the peer node, and the token bound to it (DESIGN §2b).

A stolen token is worth nothing to another node: the source accepts a token on its network face only
if it was issued to an OIDC client that belongs to the trust-listed node presenting it. The peer node
is the one the mutual-TLS connection comes from — its address, which is the ``db`` host of its entry
on the trust list (the TLS layer has already checked its certificate chains to the network's CA).

:class:`NetworkBinding` is installed on the network app (``app.state.principal_binding``); the one
authentication dependency (:func:`drimbox.trust.deps.authenticate`) applies it to every principal, so
no route sees an unbound one. The clients of each node come from ``[peers] clients`` (keyed by the
node's ``db`` host or its trust-list ``Identifiant``); the principal's ``node`` is the peer's host,
the key KOS grants (:mod:`drimbox.trust.grants`) and audit records use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

from fastapi import Request

from drimbox.trust.principal import Principal
from drimbox.trust.tokens import check_token_client

__all__ = ["NetworkBinding", "PeerNames"]

PeerNames = Callable[[str], Collection[str]]
"""The names a peer at this address goes by (its host, its trust-list ``Identifiant``); empty if unknown."""


def _host_only(host: str) -> Collection[str]:
    return (host,) if host else ()


class NetworkBinding:
    """Binds the network face's principals to the peer node presenting them.

    Parameters
    ----------
    node_clients
        Node (``db`` host or trust-list ``Identifiant``) → the OIDC client ids that belong to it.
    peer_names
        The names of the peer at a client address (the trust list's entry for it); by default the
        address alone.
    required
        ``auth.node_bound_tokens``: refuse a token that is not bound to the presenting node. When
        false the principal is only labelled with the peer's host (a closed network of one operator).
    """

    def __init__(self, node_clients: Mapping[str, Collection[str]], *, peer_names: PeerNames = _host_only,
                 required: bool = True) -> None:
        self.node_clients = {key.lower(): frozenset(ids) for key, ids in node_clients.items()}
        self.peer_names = peer_names
        self.required = required

    def bind(self, request: Request, principal: Principal) -> Principal:
        """The principal with ``node`` set to the presenting peer, or :class:`Unauthenticated`."""
        host = (request.client.host if request.client is not None else "").lower()
        if principal.kind == "developer":  # dev mode: no TLS, no peers (refused together with TLS)
            return principal
        if not self.required:
            return dataclasses.replace(principal, node=host or None)
        clients: set[str] = set()
        for name in self.peer_names(host) or _host_only(host):
            clients |= self.node_clients.get(name.lower(), frozenset())
        return check_token_client(principal, host, {host: clients} if clients else {})

