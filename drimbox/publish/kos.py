"""The KOS builder the node's pipeline uses: :mod:`drimbox.manifest`, with this node's RetrieveURLs."""

from __future__ import annotations

from drimbox.config import NodeSettings
from drimbox.publish.pipeline import KosFactory

__all__ = ["network_dicomweb_root", "node_kos_factory"]


def network_dicomweb_root(settings: NodeSettings) -> str:
    """The node's network-facing WADO-RS root, which RetrieveURLs point to (DESIGN F7)."""
    http = settings.http
    base = http.public_network_url or f"https://{http.network_host}:{http.network_port}"
    return f"{base.rstrip('/')}/dicom-web"


def node_kos_factory(settings: NodeSettings) -> KosFactory | None:
    """The manifest builder of this node (``None`` until :mod:`drimbox.manifest` provides one: the
    outbox then queues reports without publishing them, and the node says so at start)."""
    del settings
    return None
