"""PID → :class:`~drimbox.reports.PatientIdentity`, after the French conventions (IHE PAM FR).

- PID-3 (CX, repeating): the INS ``<NIR>^^^ASIP-SANTE-INS-NIR&<OID>&ISO^INS`` (OID 1.2.250.1.213.1.4.8
  INS-NIR, .9 INS-NIA, .10 test, .11 demo) and the IPP ``<id>^^^<authority>&<OID>&ISO^PI``.
- PID-5 (XPN, repeating): type ``L`` carries the *birth* name (nom de naissance, PID-5.1), the first
  birth given name (PID-5.2) and the list of birth given names (PID-5.3, space separated); type ``D``
  carries the *used* name (nom utilisé) and used given name. (In PAM FR, ``L`` is not "legal" in the
  international sense, and ``D`` is not a mere display name.)
- PID-7 birth date, PID-8 administrative sex (M, F, U; ``O`` and ``A`` read as U).
- PID-11 (XAD, repeating): the repetition of type ``BDL`` gives the INSEE code of the birth place in
  XAD-9 (county/parish code).
- PID-32 identity reliability (table 0445 as extended in France, repeating): ``VALI`` marks an
  identity whose INS was verified — the only case where the INS may be used, so the INS and its
  OID are kept only then.
"""

from __future__ import annotations

import re

from drimbox.hl7.errors import DataTypeError, ErrorLocation, RequiredFieldMissing
from drimbox.hl7.message import ParsedMessage, Segment
from drimbox.reports import (
    INS_NIA_OID,
    INS_NIR_DEMO_OID,
    INS_NIR_OID,
    INS_NIR_TEST_OID,
    IdentityStatus,
    PatientIdentity,
)

__all__ = ["INS_OIDS", "is_valid_ins", "read_patient"]

INS_OIDS = frozenset({INS_NIR_OID, INS_NIA_OID, INS_NIR_TEST_OID, INS_NIR_DEMO_OID})
"""Assigning authorities whose identifiers are INS (DESIGN §3)."""

_NIR = re.compile(r"[1-8]\d{4}(\d{2}|2A|2B)\d{6}\d{2}")
_SEXES = {"M": "M", "F": "F", "U": "U", "O": "U", "A": "U", "N": "U"}
_value = ParsedMessage.value


def is_valid_ins(ins: str) -> bool:
    """Whether ``ins`` is 13 characters and a matching 2-digit key (``97 - NIR mod 97``).

    Corsican departments ``2A``/``2B`` count as 19/18 (INSEE rule).
    """
    ins = ins.upper()
    if not _NIR.fullmatch(ins):
        return False
    digits = ins[:13]
    if digits[5:7] == "2A":
        digits = digits[:5] + "19" + digits[7:]
    elif digits[5:7] == "2B":
        digits = digits[:5] + "18" + digits[7:]
    return 97 - int(digits) % 97 == int(ins[13:])


def _identifiers(pid: Segment) -> tuple[tuple[str, str, str, str, int], ...]:
    """PID-3 repetitions as (id, authority namespace, authority OID, type code, repetition)."""
    out = []
    for rep in range(1, ParsedMessage.repetition_count(pid, 3) + 1):
        out.append(
            (
                _value(pid, 3, rep, 1),
                _value(pid, 3, rep, 4, 1),
                _value(pid, 3, rep, 4, 2),
                _value(pid, 3, rep, 5).upper(),
                rep,
            )
        )
    return tuple(out)


def _names(pid: Segment) -> dict[str, tuple[str, str, str]]:
    """PID-5 repetitions by name type: (family, first given, other given names)."""
    names: dict[str, tuple[str, str, str]] = {}
    for rep in range(1, ParsedMessage.repetition_count(pid, 5) + 1):
        kind = _value(pid, 5, rep, 7).upper() or "L"  # PAM FR: an untyped name is the birth name
        names.setdefault(kind, (_value(pid, 5, rep, 1), _value(pid, 5, rep, 2), _value(pid, 5, rep, 3)))
    return names


def _birth_place(pid: Segment) -> str | None:
    for rep in range(1, ParsedMessage.repetition_count(pid, 11) + 1):
        if _value(pid, 11, rep, 7).upper() == "BDL":
            return _value(pid, 11, rep, 9) or None
    return None


def _status(pid: Segment) -> IdentityStatus:
    codes = [_value(pid, 32, rep).upper() for rep in range(1, ParsedMessage.repetition_count(pid, 32) + 1)]
    if IdentityStatus.QUALIFIED.value in codes:
        return IdentityStatus.QUALIFIED
    known = {status.value: status for status in IdentityStatus}
    return next((known[code] for code in codes if code in known), IdentityStatus.UNKNOWN)


def _birth_date(pid: Segment) -> str:
    raw = _value(pid, 7)
    date = raw[:8]
    if not raw:
        raise RequiredFieldMissing("PID-7 birth date is empty", ErrorLocation("PID", field=7))
    if not (len(date) == 8 and date.isdigit() and 1 <= int(date[4:6]) <= 12 and 1 <= int(date[6:8]) <= 31):
        raise DataTypeError(f"PID-7 birth date {raw!r} is not YYYYMMDD", ErrorLocation("PID", field=7))
    return date


def _ins(pid: Segment, status: IdentityStatus) -> tuple[str | None, str | None]:
    if status is not IdentityStatus.QUALIFIED:
        return None, None  # the INS of an unqualified identity must not be used (RNIV)
    for ident, _namespace, oid, kind, rep in _identifiers(pid):
        if kind not in ("INS", "INS-NIR", "INS-NIA") and oid not in INS_OIDS:
            continue
        if oid not in INS_OIDS:
            raise DataTypeError(
                f"PID-3 INS {ident!r} has assigning authority OID {oid!r}, not an INS OID "
                f"({', '.join(sorted(INS_OIDS))})",
                ErrorLocation("PID", field=3, repetition=rep, component=4),
            )
        if not is_valid_ins(ident):
            raise DataTypeError(
                f"PID-3 INS {ident!r} is not 13 characters with a matching 2-digit key",
                ErrorLocation("PID", field=3, repetition=rep, component=1),
            )
        return ident.upper(), oid
    return None, None


def read_patient(pid: Segment) -> PatientIdentity:
    """Read the patient of one PID segment.

    Parameters
    ----------
    pid
        The PID segment (from :class:`~drimbox.hl7.message.ParsedMessage`).

    Returns
    -------
    PatientIdentity
        ``ins``/``ins_oid`` set only for a qualified identity (PID-32 ``VALI``).

    Raises
    ------
    RequiredFieldMissing
        No IPP (PID-3 of type ``PI``), no birth name, no birth date.
    DataTypeError
        A malformed birth date, an INS with a wrong key, an INS under an authority that is not an
        INS OID.
    """
    ipp = next((i for i in _identifiers(pid) if i[3] == "PI" and i[0]), None)
    if ipp is None:
        raise RequiredFieldMissing(
            "PID-3 has no local patient identifier (IPP, type PI)", ErrorLocation("PID", field=3)
        )
    names = _names(pid)
    birth = names.get("L")
    if birth is None or not birth[0]:
        raise RequiredFieldMissing("PID-5 has no birth name (repetition of type L)", ErrorLocation("PID", field=5))
    family, first, others = birth
    given = tuple(others.split()) if others else ((first,) if first else ())
    if first and (not given or given[0] != first):
        given = (first, *(name for name in given if name != first))
    used = names.get("D")
    status = _status(pid)
    ins, ins_oid = _ins(pid, status)
    return PatientIdentity(
        ipp=ipp[0],
        ipp_authority=ipp[1],
        ipp_authority_oid=ipp[2] or None,
        birth_family_name=family,
        given_names=given,
        birth_date=_birth_date(pid),
        sex=_SEXES.get(_value(pid, 8).upper(), "U"),
        status=status,
        ins=ins,
        ins_oid=ins_oid,
        used_family_name=(used[0] or None) if used else None,
        birth_place_code=_birth_place(pid),
        used_given_name=(used[1] or None) if used else None,
    )
