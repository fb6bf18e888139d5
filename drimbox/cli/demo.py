"""``drimbox demo``: a whole two-site network on loopback, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table

from drimbox.cli.common import err_console, out_console
from drimbox.logs import configure_logging

__all__ = ["demo"]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo exactly like Ctrl-C


def demo(
    workdir: Annotated[Path, typer.Option(help="Where every part keeps its files; endpoints.json is written here.")],
    base_port: Annotated[int | None, typer.Option(min=1024, max=65000,
                                                  help="Fixed ports from here (default: free ports).")] = None,
    samples: Annotated[bool, typer.Option(help="Load sample studies into site A's PACS.")] = True,
    full_size: Annotated[bool, typer.Option(help="Full-size mammograms (~17 MB per view).")] = True,
) -> None:
    """Start a registry and two sites (Orthanc PACS + node each) and run until interrupted."""
    from drimbox.devnet.network import DemoNetwork
    from drimbox.devnet.samples import load_demo_samples

    configure_logging()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    network = DemoNetwork(workdir, base_port=base_port, progress=lambda m: err_console.print(f"[cyan]•[/] {m}"))
    try:
        endpoints = network.start()
        if samples:
            for study in load_demo_samples(network, full_size=full_size):
                err_console.print(f"[cyan]•[/] loaded {study} into site-a's PACS")
        table = Table(title="DRIM-M demo network", show_lines=False)
        for column in ("part", "site face", "network face (mTLS)", "DIMSE", "PACS"):
            table.add_column(column)
        table.add_row("registry", endpoints["registry"]["base_url"], "", "", "")
        for node in endpoints["nodes"]:
            dimse = node["dimse"]
            pacs = node["pacs"]
            table.add_row(node["name"], node["base_url"], node["network_dicomweb"],
                          f"{dimse['aet']}@{dimse['host']}:{dimse['port']}",
                          f"{pacs['aet']}@{pacs['host']}:{pacs['port']} / {pacs['rest']}")
        out_console.print(table)
        out_console.print(f"endpoints: {network.workdir / 'endpoints.json'}   (Ctrl-C stops everything)")
        threading.Event().wait()
    except KeyboardInterrupt:
        err_console.print("stopping…")
    finally:
        network.stop()
