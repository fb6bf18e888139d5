"""The scenario model of the certification kit: what a scenario is, what it found, its verdict.

A :class:`Scenario` is one conformance check with a stable id, the family it belongs to, the
national requirement it maps to (when one exists), the profiles it applies to and the function that
runs it. Running it gives a :class:`Result`: a :class:`Verdict`, the findings that made it fail and
the :class:`Evidence` (raw requests and responses, DIMSE statuses, tool output) that shows why.
Applicability comes from the profiles the target *declares*, never from how it behaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drimbox.certify.probe import Probe

__all__ = ["Evidence", "Family", "Figure", "Profile", "Result", "Scenario", "ScenarioFailed", "Verdict"]


class Profile(StrEnum):
    """What a target claims to be (``--profile``, several allowed)."""

    DICOMWEB = "dicomweb"
    """A DICOMweb server (QIDO-RS, WADO-RS) — any PACS or gateway."""
    SOURCE = "drimm-source"
    """A DRIM-M source node: publishes KOS manifests, serves WADO-RS to trusted peers in a manifest scope."""
    CONSUMER = "drimm-consumer"
    """A DRIM-M consumer node: finds exams in the registry, retrieves and exports them."""
    REGISTRY = "registry"
    """The national registry (XDS.b registry + repository, the signed trust list)."""


class Family(StrEnum):
    """Families of scenarios, as the national homologation groups them."""

    DICOM = "dicom-conformance"
    XDS = "xds"
    DICOMWEB = "dicomweb"
    CROSS = "cross-validation"
    TRUST = "trust"
    CONSUMER = "consumer"
    PERFORMANCE = "performance"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "not-applicable"


class ScenarioFailed(Exception):
    """Raised inside a check to stop it at a finding that makes the rest meaningless."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence: an HTTP exchange, a DIMSE status, a tool's output or a note."""

    kind: str
    """``http``, ``dimse``, ``hl7``, ``tool``, ``data`` or ``note``."""
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Figure:
    """A measured figure (always reported, whatever the verdict)."""

    name: str
    value: float
    unit: str
    threshold: float | None = None
    """The limit it was judged against (``None``: reported only)."""
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    """One conformance scenario."""

    id: str
    family: Family
    title: str
    profiles: frozenset[Profile]
    """The scenario applies when the target declares at least one of these."""
    check: Callable[[Probe], None]
    requirement: str | None = None
    """The national requirement id it maps to (``DB.SO.102``, ``SC.DB/PFI.01.01`` …), when one exists."""
    reference: str = ""
    """The standard or ANS sample it follows (``PS3.18 §8.7.3``, ``ANS Validateur WADO-RS`` …)."""


@dataclass(slots=True)
class Result:
    """What running one scenario gave."""

    scenario: Scenario
    verdict: Verdict
    findings: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    duration_s: float = 0.0
    data_source: str = ""
    """Where the data the check looked at came from (produced by the kit, or already published)."""
