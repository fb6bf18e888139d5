"""The screening workflow's refusals (all HTTP 400 with the reasons listed, through
:class:`~drimbox.errors.InvalidRequest`)::

    InvalidRequest
    └── ScreeningRefused          a request, assignment or reading the programme refuses
        ├── NotScreeningExam      the exam is not a screening mammography (views, SOP class, modality)
        ├── NotEligible           the L1 reading does not qualify for a second read (ACR 3-5)
        └── AssignmentRefused     the reader cannot take this case (own L1 exam, not a programme reader)
"""

from __future__ import annotations

from drimbox.errors import InvalidRequest

__all__ = ["AssignmentRefused", "NotEligible", "NotScreeningExam", "ScreeningRefused"]


class ScreeningRefused(InvalidRequest):
    """A screening request, assignment or reading refused; ``problems`` says why."""


class NotScreeningExam(ScreeningRefused):
    """The referenced exam is not a screening mammography (PS3.3 Digital Mammography For Presentation)."""


class NotEligible(ScreeningRefused):
    """The first reading does not lead to a second read (only ACR 1 and 2 are read again)."""


class AssignmentRefused(ScreeningRefused):
    """The case cannot go to that reader."""
