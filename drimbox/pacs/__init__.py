"""The PACS bridge: the node's DIMSE SCU (:class:`PacsClient`) and SCP (:class:`NodeScp`).

- :class:`PacsClient` -- C-ECHO, C-FIND (Study Root, hierarchical walk), C-GET and C-MOVE
  retrievals streamed to disk, C-STORE of files streamed from disk; pooled query associations.
- :class:`NodeScp` -- the node's Verification and Storage SCP, receiving C-MOVE sub-operations
  (and anything else, into quarantine) without decoding them.
- :class:`MoveMediator` -- shared by both: node-wide Message IDs, and routing of each incoming
  C-STORE to the C-MOVE that caused it.

Errors are those of :mod:`drimbox.errors` (``PacsError`` and below, ``InvalidQuery``).
"""

from drimbox.pacs.mediator import MoveMediator
from drimbox.pacs.models import (
    InstanceInfo,
    QueryLevel,
    RetrievedInstance,
    SeriesInfo,
    StoreFailure,
    StoreReport,
    StudyInfo,
)
from drimbox.pacs.query import build_query
from drimbox.pacs.scp import NodeScp
from drimbox.pacs.scu import PacsClient
from drimbox.pacs.status import DimseStatus

__all__ = [
    "DimseStatus",
    "InstanceInfo",
    "MoveMediator",
    "NodeScp",
    "PacsClient",
    "QueryLevel",
    "RetrievedInstance",
    "SeriesInfo",
    "StoreFailure",
    "StoreReport",
    "StudyInfo",
    "build_query",
]
