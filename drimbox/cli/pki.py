"""``drimbox pki test-ca``: the test certificates of a containerised deployment (see docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from drimbox.cli.common import out_console
from drimbox.errors import ConfigError

__all__ = ["pki_app"]

pki_app = typer.Typer(help="Test certificates for a deployment (not for production).", no_args_is_help=True)


@pki_app.command("test-ca")
def test_ca(
    out: Annotated[Path, typer.Option(help="Directory to write the CA, certificates and keys to.")] = Path(
        "deploy/pki"
    ),
    node: Annotated[
        list[str] | None,
        typer.Option(help="SITE=HOST of a node (repeatable; default site-a=node-a and site-b=node-b)."),
    ] = None,
    issuer: Annotated[str, typer.Option(help="Issuer (iss) of the test tokens.")] = "https://idp.test.drim-m",
    audience: Annotated[str, typer.Option(help="Audience (aud) of the test tokens.")] = "drimbox",
) -> None:
    """Create a local test CA and every certificate, key and trust-list file docker-compose.yml mounts."""
    from drimbox.devnet.deploy_pki import DEFAULT_NODES, DeployNode, write_deploy_pki

    nodes: tuple[DeployNode, ...] = DEFAULT_NODES
    if node:
        pairs = [value.partition("=") for value in node]
        bad = [value for value, (site, eq, host) in zip(node, pairs, strict=True) if not (site and eq and host)]
        if bad:
            raise ConfigError(f"--node: expected SITE=HOST, got {', '.join(bad)}", key="node")
        nodes = tuple(DeployNode(site, host) for site, _, host in pairs)
    files = write_deploy_pki(out, nodes=nodes, issuer=issuer, audience=audience)
    out_console.print(f"test CA {out / 'ca.pem'}; nodes {', '.join(f'{n.site} ({n.host})' for n in nodes)}; "
                      f"trust list signer {files.cert_file}; tokens: drimbox dev-token --workdir {out}",
                      soft_wrap=True, highlight=False)
