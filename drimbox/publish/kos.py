"""The KOS builder the node's pipeline uses: :mod:`drimbox.manifest`, with this node's RetrieveURLs."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from drimbox.config import NodeSettings
from drimbox.manifest import ManifestBuilder, ManifestOptions
from drimbox.publish.pipeline import KosFactory

__all__ = ["network_dicomweb_root", "node_kos_factory"]


def network_dicomweb_root(settings: NodeSettings) -> str:
    """The node's network-facing WADO-RS root, which RetrieveURLs point to (DESIGN F7)."""
    http = settings.http
    base = http.public_network_url or f"https://{http.network_host}:{http.network_port}"
    return f"{base.rstrip('/')}/dicom-web"


def node_kos_factory(settings: NodeSettings) -> KosFactory:
    """The manifest builder of this node: RetrieveURLs on its network face, its zone for local times."""
    return ManifestBuilder(network_dicomweb_root(settings), ManifestOptions(zone=ZoneInfo(settings.publish.timezone)))
