"""Shared pieces of the command line: the ``--config`` option and the consoles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from drimbox.config import NodeSettings, load_settings
from drimbox.logs import configure_logging

__all__ = ["ConfigOption", "err_console", "load_node_settings", "out_console"]

out_console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The node's TOML settings file (DRIMBOX_* variables override it).",
                 envvar="DRIMBOX_CONFIG"),
]


def load_node_settings(config: Path) -> NodeSettings:
    """Read the settings and set up logging in their format."""
    settings = load_settings(config)
    configure_logging(settings.log_format)
    return settings
