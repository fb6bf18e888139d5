"""The node's own credential, for work without a user present (DESIGN §2b).

A prefetch for a screening second read, or a retrieval resumed once its user's token has expired,
acts as the node itself: :class:`NodeCredential` holds the access token the identity provider issues
to the node's OIDC client by client credentials (:meth:`drimbox.trust.oidc.OidcRelyingParty.client_credentials`),
renewed shortly before it expires. At the source, such a token opens one KOS only, under a grant
(:mod:`drimbox.trust.grants`); before the work is deferred, :func:`request_grant` asks the source for
that grant while the user's token is still there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from drimbox.errors import DrimboxError, Forbidden, SourceUnavailable, Unauthenticated
from drimbox.retrieve.model import Actor, Exam
from drimbox.trust.peers import PeerPolicy

__all__ = ["DeferredAccess", "NodeCredential", "TokenSource", "network_base_url", "request_grant"]

log = structlog.get_logger(__name__)

_RENEW_BEFORE_S = 60.0


class TokenSource(Protocol):
    """Where the node's token comes from (the relying party of ``[oidc]``)."""

    def client_credentials(self, scope: str) -> tuple[str, datetime]: ...


class NodeCredential:
    """The node's own access token, cached and renewed a minute before it expires (thread-safe).

    Parameters
    ----------
    source
        The identity provider client (``OidcRelyingParty``).
    node_name
        Who acts, for audit records of the consumer (``Actor.subject``).
    scope
        What the token is for (the nodes' audience, ``auth.audience``).
    clock
        Seconds since the epoch (tests).
    """

    def __init__(self, source: TokenSource, node_name: str, *, scope: str = "drimbox",
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self.node_name = node_name
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    def token(self) -> str:
        """A valid token of the node (fetched or renewed at the provider when needed)."""
        with self._lock:
            if self._token is not None and self._token[1] - self._clock() > _RENEW_BEFORE_S:
                return self._token[0]
            token, expires_at = self._source.client_credentials(self.scope)
            self._token = (token, expires_at.timestamp())
            return token

    def actor(self, *, on_behalf_of: str | None = None) -> Actor:
        """The consumer's :class:`Actor` for work without a user (its token: the node's own)."""
        subject = f"node:{self.node_name}" + (f" for {on_behalf_of}" if on_behalf_of else "")
        return Actor(subject=subject, rpps=None, role="node", display_name=self.node_name, token=self.token())


def network_base_url(exam: Exam) -> str:
    """The source's network face base URL, from the exam's RetrieveURLs (``…/dicom-web/…``)."""
    if not exam.series:
        raise Forbidden(f"KOS {exam.kos_uid} references no series")
    url = exam.series[0].retrieve_url
    parts = urlsplit(url)
    path = parts.path
    cut = path.find("/dicom-web/")
    prefix = path[:cut] if cut >= 0 else ""
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def request_grant(client: httpx.Client, policy: PeerPolicy, exam: Exam, actor: Actor, *,
                  ttl_s: float = 86400.0, purpose: str = "resume") -> datetime:
    """Ask the exam's source, on behalf of ``actor`` (a practitioner), for a grant to this node; its expiry.

    Raises :class:`Forbidden` when the source refuses, :class:`SourceUnavailable` when it cannot be reached.
    """
    base = network_base_url(exam)
    url = f"{base}/api/grants"
    policy.check_url(url)
    try:
        response = client.post(url, json={"kos": exam.kos_uid, "ttl_s": ttl_s, "purpose": purpose},
                               headers={"Authorization": f"Bearer {actor.token}"})
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{url}: {exc}") from exc
    if response.status_code == 401:
        raise Unauthenticated(f"{url}: the source refused the token ({response.text[:200]})")
    if response.status_code != 201:
        raise Forbidden(f"{url}: no grant ({response.status_code}: {response.text[:200]})")
    return datetime.fromisoformat(response.json()["expires_at"]).astimezone(UTC)


class DeferredAccess:
    """Lets work outlive its user's token: a grant asked for while the user is there, the node's token after.

    Parameters
    ----------
    credential
        The node's own token.
    client, policy
        The node-to-node HTTPS client (mutual TLS) and the trust list (the source must be on it).
    ttl_s
        How long the grants asked for last.
    """

    def __init__(self, credential: NodeCredential, client: httpx.Client, policy: PeerPolicy, *,
                 ttl_s: float = 86400.0) -> None:
        self.credential = credential
        self.client = client
        self.policy = policy
        self.ttl_s = ttl_s

    def prepare(self, exam: Exam, actor: Actor, *, purpose: str = "resume") -> bool:
        """Ask the exam's source for a grant to this node, on ``actor``'s behalf; ``False`` if it said no."""
        try:
            expires = request_grant(self.client, self.policy, exam, actor, ttl_s=self.ttl_s, purpose=purpose)
        except DrimboxError as exc:
            log.warning("no KOS grant: the work cannot outlive the user's token", kos=exam.kos_uid, error=str(exc))
            return False
        log.info("KOS grant obtained", kos=exam.kos_uid, purpose=purpose, until=expires.isoformat())
        return True

    def actor(self, *, on_behalf_of: str | None = None) -> Actor:
        """The node acting on its own credential (see :meth:`NodeCredential.actor`)."""
        return self.credential.actor(on_behalf_of=on_behalf_of)
