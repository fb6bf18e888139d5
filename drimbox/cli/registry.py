"""``drimbox registry serve``: run the national registry service."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from drimbox.logs import configure_logging

__all__ = ["registry_app"]



class LogFormat(StrEnum):
    """How the service writes its log events on stderr."""

    console = "console"
    json = "json"


registry_app = typer.Typer(help="The registry service (the national index of study references).", no_args_is_help=True)


@registry_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Listening address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Listening port.")] = 8090,
    data_dir: Annotated[Path, typer.Option(help="Index database and document store.")] = Path("./registry-data"),
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in data-dir).")] = None,
    database_url_file: Annotated[
        Path | None, typer.Option(help="File holding the SQLAlchemy URL, password included (a container secret).")
    ] = None,
    trusted_ca_file: Annotated[
        Path | None, typer.Option(help="PEM CAs trusted to sign VIHF assertions and DSG signatures.")
    ] = None,
    token_issuer: Annotated[str | None, typer.Option(help="Issuer of bearer tokens accepted by /fhir.")] = None,
    token_audience: Annotated[str | None, typer.Option(help="Audience those tokens must carry.")] = None,
    token_public_key_file: Annotated[
        Path | None, typer.Option(help="PEM public key (or certificate) of the token issuer.")
    ] = None,
    public_url: Annotated[str | None, typer.Option(help="Base URL clients see (MHD attachment URLs).")] = None,
    whitelist_nodes: Annotated[
        Path | None, typer.Option(help="TOML file of the nodes (array of tables 'nodes') served signed at /whitelist.")
    ] = None,
    whitelist_cert: Annotated[
        Path | None, typer.Option(help="PEM: trust list signer certificate, then its CA certificates.")
    ] = None,
    whitelist_key: Annotated[Path | None, typer.Option(help="PEM private key of the trust list signer.")] = None,
    log_format: Annotated[LogFormat, typer.Option(help="Log lines for people, or JSON lines.")] = LogFormat.console,
) -> None:
    """Run the registry until interrupted (options not given fall back to REGISTRY_* variables)."""
    import uvicorn

    from registry import RegistrySettings, create_app
    from registry.trustlist import TrustListPublisher

    configure_logging("json" if log_format is LogFormat.json else "console")
    if database_url_file is not None:
        if database_url is not None:
            raise typer.BadParameter("--database-url and --database-url-file exclude each other")
        try:
            database_url = database_url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise typer.BadParameter(f"--database-url-file {database_url_file}: {exc.strerror}") from exc
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
    trust_list = None
    if whitelist_nodes is not None or whitelist_cert is not None or whitelist_key is not None:
        if whitelist_nodes is None or whitelist_cert is None or whitelist_key is None:
            raise typer.BadParameter("--whitelist-nodes, --whitelist-cert and --whitelist-key go together")
        trust_list = TrustListPublisher.from_files(
            nodes_file=whitelist_nodes, cert_file=whitelist_cert, key_file=whitelist_key
        )
    uvicorn.run(create_app(settings, trust_list=trust_list), host=settings.host, port=settings.port, log_config=None,
                access_log=False, **server_limits)
