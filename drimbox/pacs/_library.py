"""The pynetdicom switches the node relies on, set in this one place.

Both are documented ``pynetdicom._config`` options (pynetdicom 2.0+) and process-wide:

- ``STORE_RECV_CHUNKED_DATASET``: a received C-STORE data set is written to a temporary file in
  DICOM file format as its P-DATA fragments arrive, and the ``EVT_C_STORE`` handler gets its path
  (``event.dataset_path``) instead of a decoded ``Dataset``: memory stays flat whatever the
  instance size, and pixel data is never decoded.
- ``STORE_SEND_CHUNKED_DATASET``: ``send_c_store(path)`` streams the file's encoded data set in
  PDU-sized chunks instead of decoding it; it needs an accepted context that matches the file's
  SOP class and transfer syntax exactly (see :mod:`drimbox.pacs.contexts`).
- ``LOG_HANDLER_LEVEL = "none"`` and ``LOG_REQUEST_IDENTIFIERS`` / ``LOG_RESPONSE_IDENTIFIERS``
  off: pynetdicom's standard handlers format every PDU, DIMSE message and identifier for its
  debug/info log *before* the logger level is consulted, a measurable CPU cost per message that
  buys nothing when those levels are off (the node logs at WARNING for pynetdicom). Warnings
  and errors are still logged.
"""

from __future__ import annotations

from pynetdicom import _config

__all__ = ["configure_pynetdicom"]


def configure_pynetdicom() -> None:
    """Enable chunked (streaming) C-STORE send and receive; skip per-message log formatting. Idempotent."""
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.STORE_SEND_CHUNKED_DATASET = True
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
