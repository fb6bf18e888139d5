"""Synthetic patients: a local identity (IPP) and, optionally, a plausible INS-NIR.

Nothing here is real patient data: names come from short lists of common French names (with
accents, on purpose, so that every consumer is exercised with ``ISO_IR 192`` text) and the NIR is
drawn at random with a valid key. The test OID ``1.2.250.1.213.1.4.10`` (INS-NIR test) is the
default so that generated identities can never be mistaken for production ones.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "INS_ISSUER",
    "INS_NIR_TEST_OID",
    "LOCAL_ISSUER",
    "Patient",
    "Sex",
    "ins_key",
    "is_valid_ins",
    "make_ins",
    "make_patient",
]

Sex = Literal["F", "M", "O"]

INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
"""OID of the INS-NIR *test* namespace (DESIGN §3); production INS-NIR is ``…4.8``."""

INS_ISSUER = "ASIP-SANTE-INS-NIR"
"""Issuer of Patient ID (0010,0021) that DRIM-M uses for the INS."""

LOCAL_ISSUER = "CH-DEMO-IPP"
"""Default issuer of the local patient identifier (the site's IPP domain)."""

_NIR_RE = re.compile(r"[12]\d{4}(\d{2}|2A|2B)\d{6}")

_FAMILY_NAMES = (
    "DUPONT", "LEFÈVRE", "MARTIN", "BÉRANGER", "FRANÇOIS", "NOËL", "MÉNARD",
    "CHÂTELAIN", "GIRAUD", "PÉRIGNON", "LAMBERT", "ROUSSEAU", "FAURÉ", "LEBŒUF",
)  # fmt: skip
_GIVEN_NAMES: dict[str, tuple[str, ...]] = {
    "F": ("Hélène", "Zoé", "Anaïs", "Chloé", "Cécile", "Françoise", "Léa", "Maëlle", "Noémie", "Éloïse"),
    "M": ("Jérôme", "François", "Gaël", "Loïc", "Benoît", "Raphaël", "Hervé", "Noël", "Théo", "Anaël"),
    "O": ("Camille", "Dominique", "Claude", "Maëlys", "Noé", "Andréa"),
}


@dataclass(frozen=True)
class Patient:
    """A synthetic patient as the site's PACS knows them.

    Attributes
    ----------
    ipp
        Local patient identifier (IPP), the PACS's PatientID.
    family, given
        Name components; may contain accented characters.
    birth_date
        ``YYYYMMDD``.
    sex
        ``F``, ``M`` or ``O`` (DICOM PatientSex values).
    ins
        The 15-character INS-NIR (13 + 2-digit key), or ``None`` when the identity is not qualified.
    ins_oid
        OID of the INS namespace; the test namespace by default.
    ipp_issuer
        Issuer of the local identifier (IssuerOfPatientID).
    """

    ipp: str
    family: str
    given: str
    birth_date: str
    sex: Sex
    ins: str | None
    ins_oid: str = INS_NIR_TEST_OID
    ipp_issuer: str = LOCAL_ISSUER

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d{8}", self.birth_date):
            raise ValueError(f"birth_date must be YYYYMMDD, got {self.birth_date!r}")
        if self.sex not in ("F", "M", "O"):
            raise ValueError(f"sex must be F, M or O, got {self.sex!r}")
        if self.ins is not None and not is_valid_ins(self.ins):
            raise ValueError(f"not a valid INS-NIR (13 characters + key): {self.ins!r}")

    @property
    def dicom_name(self) -> str:
        """PatientName (0010,0010) value, ``FAMILY^Given``."""
        return f"{self.family}^{self.given}"


def ins_key(nir13: str) -> int:
    """Return the 2-digit control key of a 13-character NIR.

    The key is ``97 - (N mod 97)`` where ``N`` is the NIR read as a number; for people born in
    Corsica the department ``2A`` is read as ``19`` and ``2B`` as ``18`` (INSEE rule).

    Parameters
    ----------
    nir13
        The 13 characters of the NIR, without the key.

    Returns
    -------
    int
        The key, between 1 and 97.
    """
    if len(nir13) != 13:
        raise ValueError(f"a NIR has 13 characters before its key, got {len(nir13)}")
    digits = nir13.upper()
    if digits[5:7] == "2A":
        digits = digits[:5] + "19" + digits[7:]
    elif digits[5:7] == "2B":
        digits = digits[:5] + "18" + digits[7:]
    if not digits.isdigit():
        raise ValueError(f"a NIR is all digits except a Corsican department 2A/2B: {nir13!r}")
    return 97 - int(digits) % 97


def is_valid_ins(ins: str) -> bool:
    """Tell whether ``ins`` is a well-formed INS-NIR whose key matches."""
    return (
        len(ins) == 15
        and bool(_NIR_RE.fullmatch(ins[:13]))
        and ins[13:].isdigit()
        and (int(ins[13:]) == ins_key(ins[:13]))
    )


def make_ins(seed: int, *, sex: Sex | None = None, birth_date: str | None = None) -> str:
    """Draw a plausible INS-NIR (13 characters + 2-digit key), deterministic from ``seed``.

    Layout: sex digit (1 man, 2 woman), year (2), month (2), department of birth (2, including
    Corsican ``2A``/``2B`` for about one seed in ten), commune (3), birth order (3), key (2).

    Parameters
    ----------
    seed
        Any integer; the same seed gives the same INS.
    sex
        When given, the sex digit agrees with it (``O`` draws 1 or 2).
    birth_date
        ``YYYYMMDD``; when given, year and month agree with it.
    """
    rng = random.Random(f"drimbox-ins-{seed}")
    sex_digit = {"M": "1", "F": "2"}.get(sex or "", rng.choice("12"))
    if birth_date is None:
        yymm = f"{rng.randrange(100):02d}{rng.randrange(1, 13):02d}"
    else:
        yymm = birth_date[2:6]
    # Corsica often enough that every consumer meets a non-numeric NIR in ordinary tests.
    roll = rng.randrange(10)
    if roll == 0:
        dept = "2A"
    elif roll == 1:
        dept = "2B"
    else:
        dept = f"{rng.choice([d for d in range(1, 96) if d != 20]):02d}"
    nir13 = f"{sex_digit}{yymm}{dept}{rng.randrange(1, 991):03d}{rng.randrange(1, 1000):03d}"
    return f"{nir13}{ins_key(nir13):02d}"


def make_patient(seed: int, *, sex: Sex = "F", with_ins: bool = True, ipp_issuer: str = LOCAL_ISSUER) -> Patient:
    """Make a synthetic patient, deterministic from ``seed``.

    Parameters
    ----------
    seed
        Any integer; the same seed (and options) gives the same patient.
    sex
        PatientSex of the patient; screening mammography wants ``F``.
    with_ins
        Give the patient a qualified INS (the DRIM-M case) or only a local IPP.
    ipp_issuer
        Issuer of the local identifier.
    """
    rng = random.Random(f"drimbox-patient-{seed}")
    # Born 1950-1985, i.e. in the screening age band for the usual study dates.
    birth_date = f"{rng.randrange(1950, 1986)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    return Patient(
        ipp=f"IPP{rng.randrange(10**8):08d}",
        family=rng.choice(_FAMILY_NAMES),
        given=rng.choice(_GIVEN_NAMES[sex]),
        birth_date=birth_date,
        sex=sex,
        ins=make_ins(seed, sex=sex, birth_date=birth_date) if with_ins else None,
        ipp_issuer=ipp_issuer,
    )
