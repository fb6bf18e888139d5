"""``drimbox demo``: a whole two-site network on loopback, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from drimbox.cli.common import err_console, out_console
from drimbox.logs import configure_logging

__all__ = ["demo"]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo exactly like Ctrl-C


def _say(message: str) -> None:
    err_console.print(f"[cyan]•[/] {message}", soft_wrap=True, highlight=False)


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
    network = DemoNetwork(workdir, base_port=base_port, progress=_say)
    try:
        endpoints = network.start()
        if samples:
            for study in load_demo_samples(network, full_size=full_size):
                _say(f"loaded {study} into site-a's PACS")
        out_console.print(f"registry  {endpoints['registry']['base_url']}", soft_wrap=True)
        for node in endpoints["nodes"]:
            dimse, pacs = node["dimse"], node["pacs"]
            out_console.print(
                f"{node['name']}  site {node['base_url']}  network {node['network_dicomweb']}  "
                f"DIMSE {dimse['aet']}@{dimse['host']}:{dimse['port']}  "
                f"PACS {pacs['aet']}@{pacs['host']}:{pacs['port']} {pacs['rest']}", soft_wrap=True)
        out_console.print(f"token     {' '.join(endpoints['token_command'])}", soft_wrap=True)
        site_a, site_b = (n["base_url"] for n in endpoints["nodes"][:2])
        out_console.print(f"screening (pilot) programme {site_a}/screening/programme  "
                          f"L2 worklist {site_b}/screening/worklist (RPPS 20202020202)", soft_wrap=True)
        out_console.print(f"ready: {network.workdir / 'endpoints.json'} (Ctrl-C stops everything)", soft_wrap=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        err_console.print("stopping…")
    finally:
        network.stop()
