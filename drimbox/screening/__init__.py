"""Organised breast-cancer screening: second reads (L2) over the network — a PILOT UNDER DEROGATION.

The arrêté of 16 January 2024 allows dematerialised second reading only as an experiment: the
feature is off unless ``[screening] enabled``. A programme (CRCDC) node takes the requests and assigns
them; the readers' nodes prefetch and show the cases; the result, a DICOM Comprehensive SR, goes back
to the L1 site and the programme (:mod:`drimbox.screening.service` tells the whole flow).
"""

from drimbox.screening.model import Assignment, BreastReading, CaseStatus, Outcome, Reading, ScreeningRequestIn
from drimbox.screening.service import ScreeningService
from drimbox.screening.wiring import ScreeningParts, screening_for_node

__all__ = [
    "Assignment",
    "BreastReading",
    "CaseStatus",
    "Outcome",
    "Reading",
    "ScreeningParts",
    "ScreeningRequestIn",
    "ScreeningService",
    "screening_for_node",
]
