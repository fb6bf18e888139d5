"""Who is calling: the identity every protected endpoint receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Principal", "PrincipalKind"]

PrincipalKind = Literal["practitioner", "node", "operator", "developer"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``rpps`` is the practitioner's national identifier (RPPS) when the caller is a health
    professional; ``node`` names the trust-listed node that presented the request, when known.
    """

    subject: str
    kind: PrincipalKind
    issuer: str
    rpps: str | None = None
    role: str | None = None
    display_name: str | None = None
    client_id: str | None = None
    node: str | None = None
