"""The test PKI of a containerised deployment (``docker-compose.yml``), made by ``drimbox pki test-ca``.

One local test CA issues everything the compose topology mounts from ``deploy/pki`` (the file names
the compose file and the ``deploy/*/node.toml`` files refer to):

- ``ca.pem`` — the trust anchor of node-to-node mutual TLS, VIHF/DSG signatures and the trust list;
- ``<site>.pem`` / ``<site>.key`` per node — its TLS certificate (server and client, subjectAltName the
  node's service name) and organisation signing key;
- ``idp.key`` / ``idp.pub.pem`` and ``idp.json`` — the test token issuer (``drimbox dev-token --workdir
  deploy/pki`` mints a practitioner's token the nodes and the registry accept);
- ``trustlist/`` — the trust list signer (chain and key) and the nodes the registry lists at ``/whitelist``.

For tests and evaluation only: in production the certificates are IGC-Santé ones and tokens come from
Pro Santé Connect.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drimbox.devnet.pki import TestCA
from drimbox.devnet.trustlist import TrustListFiles, write_trust_list_files
from registry.trustlist import ListedNode

__all__ = ["DEFAULT_NODES", "DeployNode", "write_deploy_pki"]


@dataclass(frozen=True, slots=True)
class DeployNode:
    """A node of the deployment: its site name (certificate file names) and the host peers reach it at."""

    site: str
    host: str


DEFAULT_NODES = (DeployNode("site-a", "node-a"), DeployNode("site-b", "node-b"))
"""The two sites of ``docker-compose.yml`` (and of ``drimbox demo``)."""


def write_deploy_pki(
    out: Path, *, nodes: Sequence[DeployNode] = DEFAULT_NODES, issuer: str = "https://idp.test.drim-m",
    audience: str = "drimbox",
) -> TrustListFiles:
    """Create the CA and every file listed in the module docstring in ``out`` (existing files replaced)."""
    ca = TestCA.create(out, name="drimbox deployment test CA")
    for node in nodes:
        ca.issue(node.site, hosts=[node.host, f"{node.site}.localhost", "localhost"])
    signer = ca.issue_signing_key("idp")
    idp = {"issuer": issuer, "audience": audience, "signing_key": str(signer.key_path.resolve()),
           "public_key": str(signer.public_key_path.resolve())}
    fd = os.open(out / "idp.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(idp, indent=2) + "\n")
    listed = [ListedNode(number, node.host, node.host, f"Site {node.site}", f"CN={node.site}",
                         "support@deploy.invalid") for number, node in enumerate(nodes, 1)]
    return write_trust_list_files(ca, out / "trustlist", listed)
