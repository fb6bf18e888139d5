"""``drimbox serve`` and ``drimbox config check``: run a node, or validate its settings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from drimbox.cli.common import ConfigOption, load_node_settings, out_console

__all__ = ["config_app", "register"]

config_app = typer.Typer(help="Inspect a node's settings.", no_args_is_help=True)


@config_app.command("check")
def check(config: ConfigOption) -> None:
    """Validate a settings file; print the effective settings."""
    settings = load_node_settings(config)
    out_console.print_json(settings.model_dump_json())


@config_app.command("reference")
def reference(output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None
              ) -> None:
    """Print the configuration reference (docs/configuration.md) generated from the settings models."""
    from drimbox.ops.reference import configuration_reference

    _emit(configuration_reference(), output)


@config_app.command("conformance")
def conformance(output_dir: Annotated[Path | None, typer.Option(
        help="Write dicom-conformance.md and dicomweb-conformance.md there instead of stdout.")] = None) -> None:
    """Print the DICOM and DICOMweb conformance statements generated from the code's negotiation lists."""
    from drimbox.ops.conformance import dicom_conformance, dicomweb_conformance

    texts = {"dicom-conformance.md": dicom_conformance(), "dicomweb-conformance.md": dicomweb_conformance()}
    for name, text in texts.items():
        _emit(text, output_dir / name if output_dir is not None else None)


@config_app.command("metrics")
def metrics(output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None
            ) -> None:
    """Print the metrics reference (docs/metrics.md) generated from the node's metric declarations."""
    from drimbox.ops.metrics_reference import metrics_reference

    _emit(metrics_reference(), output)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def serve(config: ConfigOption) -> None:
    """Run the node (DIMSE SCP, site face, network face) until interrupted."""
    from drimbox.node import run_node  # the server stack is only imported by the commands that run it

    run_node(load_node_settings(config))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve)
    app.add_typer(config_app, name="config")
