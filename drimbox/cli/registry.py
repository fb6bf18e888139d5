"""``drimbox registry serve``: run the national registry service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from drimbox.logs import configure_logging

__all__ = ["registry_app"]

registry_app = typer.Typer(help="The registry service (the national index of study references).",
                           no_args_is_help=True)


@registry_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Listening address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Listening port.")] = 8090,
    data_dir: Annotated[Path, typer.Option(help="Index database and document store.")] = Path("./registry-data"),
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in data-dir).")] = None,
) -> None:
    """Run the registry until interrupted."""
    import uvicorn

    from registry import RegistrySettings, create_app

    configure_logging()
    settings = RegistrySettings(host=host, port=port, data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)
