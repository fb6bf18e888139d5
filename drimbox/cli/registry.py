"""``drimbox registry serve``: run the national registry service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from drimbox.logs import configure_logging

__all__ = ["registry_app"]

registry_app = typer.Typer(help="The registry service (the national index of study references).", no_args_is_help=True)


@registry_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Listening address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Listening port.")] = 8090,
    data_dir: Annotated[Path, typer.Option(help="Index database and document store.")] = Path("./registry-data"),
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in data-dir).")] = None,
    trusted_ca_file: Annotated[
        Path | None, typer.Option(help="PEM CAs trusted to sign VIHF assertions and DSG signatures.")
    ] = None,
    token_issuer: Annotated[str | None, typer.Option(help="Issuer of bearer tokens accepted by /fhir.")] = None,
    token_audience: Annotated[str | None, typer.Option(help="Audience those tokens must carry.")] = None,
    token_public_key_file: Annotated[
        Path | None, typer.Option(help="PEM public key (or certificate) of the token issuer.")
    ] = None,
    public_url: Annotated[str | None, typer.Option(help="Base URL clients see (MHD attachment URLs).")] = None,
) -> None:
    """Run the registry until interrupted (options not given fall back to REGISTRY_* variables)."""
    import uvicorn

    from registry import RegistrySettings, create_app

    configure_logging()
    optional: dict[str, Any] = {
        "database_url": database_url,
        "trusted_ca_file": trusted_ca_file,
        "token_issuer": token_issuer,
        "token_audience": token_audience,
        "token_public_key_file": token_public_key_file,
        "public_url": public_url,
    }
    settings = RegistrySettings(
        host=host,
        port=port,
        data_dir=data_dir,
        **{key: value for key, value in optional.items() if value is not None},
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from registry.limits import registry_http_limits, uvicorn_limits

    server_limits = uvicorn_limits(registry_http_limits(settings.max_request_bytes))
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False,
                **server_limits)
