"""Structured logging (structlog) for every drimbox process, console or JSON lines."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging"]


def configure_logging(fmt: Literal["console", "json"] = "console", level: int = logging.INFO) -> None:
    """Route structlog and the standard library (uvicorn, pynetdicom) through one renderer on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Plain tracebacks: the default (rich, with every frame's locals) can take minutes on the large
    # objects of a cancelled request — seen as a node that would not exit after SIGTERM.
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    # JSON lines carry tracebacks as structured data (one line per event, whatever happened).
    tracebacks: list[structlog.types.Processor] = [structlog.processors.dict_tracebacks] if fmt == "json" else []
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pynetdicom logs every PDU at INFO; keep its warnings only.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # httpx logs every request at INFO; the node's own access events say more.
    logging.getLogger("httpx").setLevel(logging.WARNING)
