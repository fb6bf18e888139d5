"""A publishing node for the crash tests, run as its own process: ``python -m tests.publish.node_child CONFIG``.

The node's publication path and nothing else: the MLLP listener, the outbox (crash points from
``DRIMBOX_PUBLISH__CRASH_POINT``), the worker and the pipeline with the production XDS.b client,
C-FIND to the real PACS, the KOS from :mod:`drimbox.manifest`, the registry over HTTP.
Prints ``READY host port`` once listening; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from drimbox.config import load_settings
from drimbox.hl7 import MllpListener
from drimbox.logs import configure_logging
from drimbox.pacs import PacsClient
from drimbox.publish.kos import node_kos_factory
from drimbox.publish.service import PublicationService


def main() -> None:
    settings = load_settings(Path(sys.argv[1]))
    configure_logging(settings.log_format)
    pacs = PacsClient(settings.local, settings.pacs, settings.dimse)
    service = PublicationService(settings, pacs, node_kos_factory(settings))
    if service.disabled_reason:
        raise SystemExit(f"publication disabled: {service.disabled_reason}")
    listener = MllpListener(settings.hl7, service.accept)
    service.start()
    listener.start()
    host, port = listener.address
    print(f"READY {host} {port}", flush=True)  # noqa: T201 - the parent test waits for this line
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    listener.stop()
    service.stop()
    pacs.close()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # sigwait receives them
    main()
