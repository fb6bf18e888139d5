"""The screening second read as data: readings, requests, cases and their status.

These pydantic models are the API's schema (OpenAPI), the node-to-node messages and what the store
keeps as JSON. A reading gives, per breast, the ACR / BI-RADS assessment category (1-5) and the
breast density (ACR A-D); the second reading (L2) adds the outcome.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Assignment",
    "BreastReading",
    "CaseStatus",
    "ExamRef",
    "L2ReadingIn",
    "Laterality",
    "Outcome",
    "PatientRef",
    "Priority",
    "Reading",
    "ScreeningRequestIn",
    "is_discordant",
]

Laterality = Literal["R", "L"]
Priority = Literal["routine", "urgent"]
Rpps = Annotated[str, Field(pattern=r"^[0-9]{11}$", description="RPPS number (11 digits)")]
Uid = Annotated[str, Field(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$", max_length=64)]


class CaseStatus(StrEnum):
    """Where a second read is. The programme sees every state; a reader's worklist from ``waiting`` on."""

    REQUESTED = "requested"
    """Accepted by the programme, not assigned yet."""
    WAITING = "waiting"
    """Assigned; the reader's node is bringing the images."""
    PREFETCHED = "prefetched"
    """The exam and its priors are in the reader's node cache: opening is instant."""
    IN_READING = "in_reading"
    DONE = "done"


class Outcome(StrEnum):
    """The second reader's conclusion."""

    NORMAL = "normal"
    RECALL = "recall"
    """Recall for diagnostic work-up."""
    TECHNICAL_RECALL = "technical_recall"
    """The images are not readable: new images are needed."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreastReading(_Model):
    """One breast's reading."""

    laterality: Laterality
    category: Annotated[int, Field(ge=1, le=5, description="ACR / BI-RADS assessment category 1-5")]
    density: Literal["A", "B", "C", "D"] = Field(description="ACR breast density A-D")


class Reading(_Model):
    """A reading of the exam (L1, or L2 with its ``outcome``)."""

    reader_rpps: Rpps
    reader_name: str = ""
    date: date
    breasts: Annotated[tuple[BreastReading, ...], Field(min_length=1, max_length=2)]
    notes: Annotated[str, Field(max_length=4000)] = ""
    outcome: Outcome | None = None

    @model_validator(mode="after")
    def _one_per_side(self) -> Reading:
        sides = [b.laterality for b in self.breasts]
        if len(set(sides)) != len(sides):
            raise ValueError("one reading per breast: a laterality is given twice")
        return self

    def breast(self, laterality: str) -> BreastReading | None:
        """The reading of one breast, when this reading has it."""
        return next((b for b in self.breasts if b.laterality == laterality), None)

    @property
    def highest_category(self) -> int:
        return max(b.category for b in self.breasts)


class L2ReadingIn(_Model):
    """What the second reader enters (who reads comes from their login, not from the form)."""

    date: date
    breasts: Annotated[tuple[BreastReading, ...], Field(min_length=1, max_length=2)]
    notes: Annotated[str, Field(max_length=4000)] = ""
    outcome: Outcome

    def by(self, rpps: str, name: str | None) -> Reading:
        """The reading, signed by the reader."""
        return Reading(reader_rpps=rpps, reader_name=name or "", date=self.date, breasts=self.breasts,
                       notes=self.notes, outcome=self.outcome)


class PatientRef(_Model):
    """The screened woman, identified by her INS (strict traits, as the L1 site knows them)."""

    ins: Annotated[str, Field(pattern=r"^[0-9AB]{13}[0-9]{2}$")]
    ins_oid: Annotated[str, Field(pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$")] = "1.2.250.1.213.1.4.8"
    family_name: Annotated[str, Field(min_length=1, max_length=100)]
    given_name: Annotated[str, Field(min_length=1, max_length=100)]
    birth_date: date
    sex: Literal["F", "M", "U"] = "F"


class ScreeningRequestIn(_Model):
    """A second-read request, made after the L1 reading by the L1 site or the programme."""

    study_uid: Uid
    kos_uid: Uid | None = None
    """The published KOS (default: the registry's manifest of ``study_uid``)."""
    patient: PatientRef
    l1: Reading
    single_breast: Laterality | None = None
    """Only this breast was imaged (mastectomy): only its CC and MLO are required."""
    priority: Priority = "routine"
    l1_site_url: str | None = None
    """Network face of the L1 site, where the result goes back (default: the node that takes the request)."""

    @model_validator(mode="after")
    def _breasts_match(self) -> ScreeningRequestIn:
        sides = {b.laterality for b in self.l1.breasts}
        wanted = {self.single_breast} if self.single_breast else {"R", "L"}
        if sides != wanted:
            raise ValueError(f"the L1 reading must give breasts {sorted(wanted)}, gives {sorted(sides)}")
        if self.l1.outcome is not None:
            raise ValueError("the outcome is the second reader's: an L1 reading has none")
        return self


class ExamRef(_Model):
    """A published exam by its study and KOS."""

    study_uid: Uid
    kos_uid: Uid


class Assignment(_Model):
    """The programme's message to a reader's node: read this case (node to node)."""

    request_id: str
    study_uid: Uid
    kos_uid: Uid
    patient: PatientRef
    reader_rpps: Rpps
    l1: Reading
    """The first reading: it goes into the result SR and decides discordance; the reading page does not
    show it before the second reading is recorded (an independent read)."""
    single_breast: Laterality | None = None
    priority: Priority = "routine"
    requested_at: datetime
    programme_url: str
    l1_site_url: str
    priors: tuple[ExamRef, ...] = ()
    """The prior screening exams the programme found (most recent first) and granted the reader's node."""


def is_discordant(l1: Reading, l2: Reading) -> bool:
    """Whether the two readings disagree: the L2 reader recalls (work-up), or a breast's category differs
    between the two sides of "normal/benign" (1-2) and "needs something" (3-5), or the densities differ
    by more than one class (A vs C)."""
    if l2.outcome is Outcome.RECALL:
        return True
    for second in l2.breasts:
        first = l1.breast(second.laterality)
        if first is None:
            continue
        if (first.category <= 2) != (second.category <= 2):
            return True
        if abs(ord(first.density) - ord(second.density)) > 1:
            return True
    return False
