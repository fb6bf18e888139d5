"""The ``drimbox`` command line: one root app, sub-commands in one module per group.

:func:`main` is the console-script entry point; it turns the node's own errors into a one-line
message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import sys

import typer

from drimbox.cli import audit, certify, fetch, node, pacs, prefetch, publish, xdm
from drimbox.cli.common import err_console
from drimbox.cli.demo import demo
from drimbox.cli.pki import pki_app
from drimbox.cli.registry import registry_app
from drimbox.cli.screening import screening_app
from drimbox.cli.tokens import dev_token
from drimbox.errors import DrimboxError

__all__ = ["app", "main"]

app = typer.Typer(name="drimbox", help="DRIM-M imaging sharing node.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
node.register(app)
prefetch.register(app)
fetch.register(app)
publish.register(app)
xdm.register(app)
audit.register(app)
certify.register(app)
app.add_typer(pacs.pacs_app, name="pacs")
app.add_typer(registry_app, name="registry")
app.add_typer(screening_app, name="screening")
app.add_typer(pki_app, name="pki")
app.command("demo")(demo)
app.command("dev-token")(dev_token)


def main() -> None:
    """Run the command line; node errors become ``error: …`` on stderr and exit status 2."""
    try:
        app()
    except DrimboxError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
