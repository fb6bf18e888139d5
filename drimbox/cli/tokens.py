"""``drimbox dev-token``: a bearer token of a test practitioner, from the demo's identity provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization

from drimbox.errors import ConfigError
from drimbox.trust import mint_token

__all__ = ["IDP_FILE", "dev_token"]

IDP_FILE = "idp.json"
"""Written by ``drimbox demo`` in its workdir: issuer, audience and signing key of the demo's provider."""


def dev_token(
    workdir: Annotated[Path, typer.Option(help="The workdir of a running `drimbox demo`.")],
    rpps: Annotated[str, typer.Option(help="The practitioner's RPPS number (11 digits).")] = "10101010101",
    role: Annotated[str, typer.Option(help="Role claim (e.g. radiologist, operator).")] = "radiologist",
    name: Annotated[str, typer.Option(help="Display name.")] = "Dr Test Radiologue",
    ttl: Annotated[int, typer.Option(min=60, max=86400, help="Lifetime in seconds.")] = 3600,
    client: Annotated[str | None, typer.Option(
        help="OIDC client the token is issued to (azp): a site's name to act as that site's node "
             "(`drimbox fetch --config site-b/node.toml` needs `--client site-b`); default: the test tool.",
    )] = None,
) -> None:
    """Print a bearer token accepted by every node and the registry of the demo."""
    path = workdir / IDP_FILE
    try:
        idp = json.loads(path.read_text())
        key = serialization.load_pem_private_key(Path(idp["signing_key"]).read_bytes(), password=None)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: no demo identity provider here ({exc})") from exc
    if not (len(rpps) == 11 and rpps.isdigit()):
        raise ConfigError(f"--rpps: an RPPS number has 11 digits, got {rpps!r}", key="rpps")
    token = mint_token(key, issuer=idp["issuer"], audience=idp["audience"], subject=f"rpps:{rpps}", rpps=rpps,
                       role=role, name=name, ttl_s=ttl, client_id=client or idp.get("client_id"))
    typer.echo(token)
