"""DIMSE status codes the node sends or reacts to, by name (PS3.7 Annex C, PS3.4 Annexes B, C).

The codes are the standard's; the names of everything else come from pynetdicom's per-service
tables, so a failure message reads ``0xA801 (Move destination unknown)`` whatever the code.
"""

from __future__ import annotations

from enum import IntEnum

from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    VERIFICATION_SERVICE_CLASS_STATUS,
    StatusDictType,
    code_to_category,
)

__all__ = ["DimseStatus", "Service", "category", "describe"]


class DimseStatus(IntEnum):
    """Status codes referenced by the node."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_WITH_WARNING = 0xFF01
    """C-FIND pending: optional keys were not supported for matching or return."""
    CANCEL = 0xFE00
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    """Storage: refused, out of resources (disk full, cannot write)."""
    OUT_OF_RESOURCES_SUB_OPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    """Storage: the data set cannot be parsed or lacks the keys needed to file it."""
    SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000


class Service:
    """Status tables per DIMSE service, for :func:`describe`."""

    ECHO: StatusDictType = VERIFICATION_SERVICE_CLASS_STATUS
    FIND: StatusDictType = QR_FIND_SERVICE_CLASS_STATUS
    GET: StatusDictType = QR_GET_SERVICE_CLASS_STATUS
    MOVE: StatusDictType = QR_MOVE_SERVICE_CLASS_STATUS
    STORE: StatusDictType = STORAGE_SERVICE_CLASS_STATUS


def category(code: int) -> str:
    """``Success``, ``Pending``, ``Warning``, ``Failure``, ``Cancel`` or ``Unknown``."""
    return code_to_category(code)


def describe(code: int, service: StatusDictType | None = None) -> str:
    """``0xA801 (Move destination unknown)``: the code in hex with its name in ``service``'s table."""
    for table in (service or {}, GENERAL_STATUS):
        entry = table.get(code)
        if entry is not None:
            return f"0x{code:04X} ({entry[1]})"
    return f"0x{code:04X} ({code_to_category(code)})"
