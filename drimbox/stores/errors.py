"""Translate the PACS bridge's errors into the gateway's, in one place.

The gateway maps its own tree to HTTP (``dicomweb_gateway.errors``); the bridges below raise
:mod:`drimbox.errors`. A backend wraps every call into the PACS in :func:`gateway_errors` so that
a client sees::

    PacsUnreachable, PacsTimeout, AssociationAborted  → BackendUnavailable  503 + Retry-After
    DimseFailure 0xA7xx (out of resources)            → BackendUnavailable  503 + Retry-After
    StudyNotFound                                     → NotFound            404
    InvalidQuery                                      → InvalidQuery        400
    any other PacsError (rejected, refused, incomplete) → BackendError      502

An aborted association is "unavailable" rather than "broken": the PACS restarted or dropped an
idle association, and the same request usually succeeds a few seconds later. A rejected association
is a configuration matter (unknown AE title), which retrying does not fix, hence 502.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dicomweb_gateway import BackendError, BackendUnavailable, InvalidQuery, NotFound
from drimbox import errors

__all__ = ["gateway_errors", "translate"]

_OUT_OF_RESOURCES = 0xA700


def translate(exc: errors.DrimboxError, retry_after_s: int | None = None) -> Exception:
    """The gateway error a client should see for ``exc``."""
    match exc:
        case errors.StudyNotFound():
            return NotFound(str(exc))
        case errors.PacsUnreachable() | errors.PacsTimeout() | errors.AssociationAborted():
            return BackendUnavailable(f"the PACS is not available: {exc}", retry_after_s)
        case errors.DimseFailure() if exc.status & 0xFF00 == _OUT_OF_RESOURCES:
            return BackendUnavailable(f"the PACS is busy: {exc}", retry_after_s)
        case errors.InvalidQuery():
            return InvalidQuery(str(exc))
        case _:
            return BackendError(f"the PACS failed: {exc}")


@contextlib.contextmanager
def gateway_errors(retry_after_s: int | None = None) -> Iterator[None]:
    """Re-raise the node's errors raised inside the block as gateway errors (cause kept)."""
    try:
        yield
    except errors.DrimboxError as exc:
        raise translate(exc, retry_after_s) from exc
