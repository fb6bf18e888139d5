"""Test helper: site A's network face with the manifest scope wired in, served in-process.

The tests assemble the network app the node builds (:func:`create_network_app` +
:func:`network_dicomweb_router` over site A's store, i.e. its real Orthanc), with the real
:func:`kos_scope_dependency` over site A's real publication outbox, and serve it with uvicorn over
mutual TLS on site A's loopback address — without the peer check and token binding, which
``test_node_bound_access`` and ``test_trust_list_peers`` check on the running node.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from drimbox.app import create_network_app
from drimbox.config import NodeSettings
from drimbox.publish.outbox import Outbox
from drimbox.publish.service import outbox_path
from drimbox.stores import build_dicomweb, network_dicomweb_router
from drimbox.trust import JwtVerifier
from drimbox.trust.audit import AuditStore
from drimbox.trust.scope import ManifestIndex, ScopedAuditStore, kos_scope_dependency


@dataclass
class ScopedFace:
    """The running face: its DICOMweb root and its audit store."""

    url: str
    audit: AuditStore
    outbox: Outbox


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def scoped_network_face(site_a: NodeSettings, data_dir: Path) -> Iterator[ScopedFace]:
    """Serve site A's network face with the manifest scope until the block ends."""
    host = site_a.http.network_host
    local = site_a.model_copy(update={"storage": site_a.storage.model_copy(update={"data_dir": data_dir})})
    outbox = Outbox(outbox_path(site_a))  # site A's own outbox: the KOS it really published
    audit = AuditStore(data_dir / "audit.sqlite")
    dicomweb = build_dicomweb(local)
    scope = kos_scope_dependency(ManifestIndex(outbox), audit)
    router = network_dicomweb_router(ScopedAuditStore(dicomweb.store, audit),  # type: ignore[arg-type]
                                     dicomweb.network_settings, kos_scope=scope)
    app = create_network_app(node_name=site_a.name, verifier=JwtVerifier.from_settings(site_a.auth),
                             extra_routers=(router,))
    tls = site_a.tls
    port = _free_port(host)
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file),
                            ssl_ca_certs=str(tls.ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED, log_config=None,
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the scoped network face did not start")
        time.sleep(0.02)
    try:
        yield ScopedFace(f"https://{host}:{port}/dicom-web", audit, outbox)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        dicomweb.close()
        audit.close()
        outbox.close()
