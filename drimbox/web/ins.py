"""Validation of a contextual call (F5): the patient's INS traits as the practitioner's software posts them.

The node must never show a patient's images under a wrong identity, so a call is refused unless
every trait is well formed and the traits agree with each other (identitovigilance, RNIV):

- the INS (``Patient.identifier.value``) is 13 characters and a 2-digit key, ``key = 97 - (N mod 97)``
  where ``N`` is the 13 characters read as a number — for a Corsican birth the department ``2A``
  is read as ``19`` and ``2B`` as ``18`` (INSEE rule);
- its assigning authority (``Patient.identifier.system``, bare or ``urn:oid:``) is one of the INS OIDs:
  INS-NIR ``1.2.250.1.213.1.4.8``, INS-NIA ``.9``, test ``.10``, demo ``.11``;
- the sex agrees with the INS's first digit (odd: male, even: female — ``1``/``2`` for a NIR,
  ``7``/``8`` for a provisional number), and the birth date with its year and month (months 20,
  30–42 and 50+ encode an unknown or fictitious month and are not compared);
- the birth place (``Address.district``) is an INSEE code (``2A``/``2B`` included, ``99xxx`` abroad).

Every problem is collected, not only the first, so the integrator fixes the call in one pass. A
problem is a code and parameters, not a sentence: the page says it in the user's language
(:mod:`drimbox.web.i18n`). ``InformationEtConsentement`` other than true refuses the call outright
(:class:`ConsentNotGiven`): the patient must be informed and not oppose access to their record.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from drimbox.errors import Forbidden, InvalidRequest
from drimbox.retrieve.model import PatientTraits, Sex

__all__ = [
    "EMERGENCY_SITUATIONS",
    "FIELDS",
    "INS_OIDS",
    "NIA_OID",
    "NIR_OID",
    "ConsentNotGiven",
    "ContextualCall",
    "ContextualCallInvalid",
    "Problem",
    "nir_key",
    "parse_contextual_call",
    "validate_ins",
]

NIR_OID = "1.2.250.1.213.1.4.8"
NIA_OID = "1.2.250.1.213.1.4.9"
NIR_TEST_OID = "1.2.250.1.213.1.4.10"
NIR_DEMO_OID = "1.2.250.1.213.1.4.11"
INS_OIDS = frozenset({NIR_OID, NIA_OID, NIR_TEST_OID, NIR_DEMO_OID})

# The form's field names (DESIGN §2 F5), in the order a problem list shows them.
INS_VALUE = "Patient.identifier.value"
INS_SYSTEM = "Patient.identifier.system"
FAMILY = "Patient.name.family"
GIVEN = "Patient.name.given"
GENDER = "Patient.gender"
BIRTH_DATE = "Patient.birthDate"
DISTRICT = "Address.district"
CONSENT = "InformationEtConsentement"
PATIENT_ID = "PatientID"
PATIENT_ID_ISSUER = "PatientIDIssuer"
SITUATION = "Situation"
FIELDS = (INS_VALUE, INS_SYSTEM, FAMILY, GIVEN, GENDER, BIRTH_DATE, DISTRICT, CONSENT, PATIENT_ID,
          PATIENT_ID_ISSUER, SITUATION)
_REQUIRED = FIELDS[:-1]

EMERGENCY_SITUATIONS = frozenset({"URGENCE", "BRISDEGLACE", "EMERGENCY", "BREAKTHEGLASS"})
"""``Situation`` values (upper-cased, accents, spaces, ``_`` and ``-`` removed) that mean emergency access."""

_TRUE = frozenset({"true", "1", "oui", "yes", "o", "y", "vrai"})
_FALSE = frozenset({"false", "0", "non", "no", "n", "faux"})
_SEXES: dict[str, Sex] = {
    "m": "M", "male": "M", "h": "M", "homme": "M", "masculin": "M",
    "f": "F", "female": "F", "femme": "F", "feminin": "F",
    "u": "U", "unknown": "U", "i": "U", "indetermine": "U", "o": "U", "other": "U", "autre": "U",
}  # fmt: skip
# Sex digit, year, month, department (2A/2B in Corsica), commune, order; then the key.
_INS = re.compile(r"(?P<sex>\d)(?P<yy>\d{2})(?P<mm>\d{2})(?P<dept>\d{2}|2A|2B)\d{6}(?P<key>\d{2})")
_NIR_SEX_DIGITS = frozenset("1234")
"""A NIR: 1/2 (and 3/4, older numbers of people born abroad); 7/8 are provisional (NIA)."""
_NIA_SEX_DIGITS = frozenset("12345678")
_DISTRICT = re.compile(r"(\d{2}|2A|2B)\d{3}")
_NAME_PUNCTUATION = frozenset(" -'’.")
_LOCAL_ID_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f^~\\&|]")
_MAX_NAME = 100
_MAX_LOCAL_ID = 64


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a call: the form field, a message code and its parameters.

    The code is a key of the page catalogue (``problem.<code>``); :meth:`english` gives the sentence
    logs and problem+json carry.
    """

    field: str
    code: str
    params: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def english(self) -> str:
        from drimbox.web.i18n import translator

        return translator("en").problem(self)


class ContextualCallInvalid(InvalidRequest):
    """The call's traits are missing, malformed or incoherent (HTTP 400); ``details`` lists each."""

    def __init__(self, details: tuple[Problem, ...]) -> None:
        super().__init__(f"invalid contextual call ({len(details)} problems)",
                         problems=tuple(p.english() for p in details))
        self.details = details


class ConsentNotGiven(Forbidden):
    """``InformationEtConsentement`` is not true: the node must not look the patient up (HTTP 403)."""

    def __init__(self, value: str) -> None:
        super().__init__(f"InformationEtConsentement is {value!r}: the patient was not informed or opposed")
        self.value = value


@dataclass(frozen=True, slots=True)
class ContextualCall:
    """A validated call: the strict INS traits, and whether it asks for emergency access."""

    traits: PatientTraits
    situation: str | None = None
    emergency: bool = False


def nir_key(nir13: str) -> int:
    """The control key of the 13 first characters of a NIR/NIA: ``97 - (N mod 97)``, Corsican
    ``2A`` read as ``19`` and ``2B`` as ``18`` (the letters only ever stand in the department)."""
    if len(nir13) != 13:
        raise ValueError(f"a NIR has 13 characters before its key, got {len(nir13)}")
    digits = nir13.upper()
    if digits[5:7] == "2A":
        digits = f"{digits[:5]}19{digits[7:]}"
    elif digits[5:7] == "2B":
        digits = f"{digits[:5]}18{digits[7:]}"
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"a NIR is all digits but a Corsican department 2A/2B: {nir13!r}")
    return 97 - int(digits) % 97


def _fold(value: str) -> str:
    """Lower case without accents: the form's coded values come from many programs."""
    return "".join(c for c in unicodedata.normalize("NFKD", value.strip().lower()) if not unicodedata.combining(c))


def normalise_oid(system: str) -> str:
    """``urn:oid:1.2.3`` → ``1.2.3`` (FHIR systems carry the prefix, HL7v2/XDS the bare OID)."""
    value = system.strip()
    return value[len("urn:oid:"):] if value.lower().startswith("urn:oid:") else value


def validate_ins(ins: str, oid: str | None) -> list[Problem]:
    """Problems of an INS alone (format, key, first digit for its OID); ``oid`` already normalised."""
    match = _INS.fullmatch(ins)
    if len(ins) != 15:
        return [Problem(INS_VALUE, "ins.length", {"value": ins, "length": str(len(ins))})]
    if match is None:
        return [Problem(INS_VALUE, "ins.format", {"value": ins})]
    allowed = _NIR_SEX_DIGITS if oid == NIR_OID else _NIA_SEX_DIGITS
    problems = []
    if match["sex"] not in allowed:
        problems.append(Problem(INS_VALUE, "ins.first_digit", {"value": ins, "digit": match["sex"]}))
    if nir_key(ins[:13]) != int(match["key"]):
        problems.append(Problem(INS_VALUE, "ins.key", {"value": ins, "key": match["key"]}))
    return problems


def _fields(form: Mapping[str, str]) -> dict[str, str]:
    """The known fields by their canonical name; names match case-insensitively (the ANS
    demonstrator lower-cases them, software in the field sends either)."""
    canonical = {name.lower(): name for name in FIELDS}
    values: dict[str, str] = {}
    for name, value in form.items():
        key = canonical.get(name.strip().lower())
        if key is not None:
            values[key] = value.strip()
    return values


def _check_name(name: str, value: str) -> list[Problem]:
    if len(value) > _MAX_NAME:
        return [Problem(name, "too_long", {"max": str(_MAX_NAME)})]
    bad = sorted({c for c in value if not (c.isalpha() or c in _NAME_PUNCTUATION)})
    if bad:
        return [Problem(name, "name.chars", {"value": value, "chars": " ".join(bad)})]
    if not any(c.isalpha() for c in value):
        return [Problem(name, "name.chars", {"value": value, "chars": value})]
    return []


def _check_local(name: str, value: str) -> list[Problem]:
    if len(value) > _MAX_LOCAL_ID:
        return [Problem(name, "too_long", {"max": str(_MAX_LOCAL_ID)})]
    if _LOCAL_ID_FORBIDDEN.search(value):
        return [Problem(name, "local.chars", {"value": value})]
    return []


def _parse_date(value: str) -> date | None:
    for pattern in (r"(\d{4})-(\d{2})-(\d{2})", r"(\d{4})(\d{2})(\d{2})"):
        match = re.fullmatch(pattern, value)
        if match:
            try:
                return date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                return None
    return None


def _situation(value: str | None) -> tuple[bool, list[Problem]]:
    if not value:
        return False, []
    folded = re.sub(r"[\s_\-]", "", _fold(value)).upper()
    if folded in EMERGENCY_SITUATIONS:
        return True, []
    if folded in {"NORMAL", "NORMALE", "STANDARD"}:
        return False, []
    return False, [Problem(SITUATION, "situation.unknown", {"value": value})]


def parse_contextual_call(form: Mapping[str, str], *, today: date | None = None,
                          extra: Sequence[Problem] = ()) -> ContextualCall:
    """Validate a contextual call's form.

    Raises :class:`ConsentNotGiven` when ``InformationEtConsentement`` is given and not true (the
    refusal comes first: nothing else matters), else :class:`ContextualCallInvalid` listing every
    problem found (``extra``: problems the caller found in the raw form, e.g. a field sent twice).
    """
    today = today or date.today()
    values = _fields(form)
    consent = values.get(CONSENT, "")
    if consent and _fold(consent) in _FALSE:
        raise ConsentNotGiven(consent)
    problems = [*extra, *(Problem(name, "missing") for name in _REQUIRED if not values.get(name))]
    present = {name: v for name, v in values.items() if v}

    if consent and _fold(consent) not in _TRUE:
        problems.append(Problem(CONSENT, "consent.value", {"value": consent}))

    oid = normalise_oid(present[INS_SYSTEM]) if INS_SYSTEM in present else None
    if oid is not None and oid not in INS_OIDS:
        problems.append(Problem(INS_SYSTEM, "oid.unknown", {"value": present[INS_SYSTEM]}))

    ins = re.sub(r"\s", "", present.get(INS_VALUE, "")).upper()
    ins_problems = validate_ins(ins, oid) if ins else []
    problems += ins_problems
    ins_parts = _INS.fullmatch(ins) if ins and not ins_problems else None

    sex: Sex | None = None
    if GENDER in present:
        sex = _SEXES.get(_fold(present[GENDER]))
        if sex is None:
            problems.append(Problem(GENDER, "gender.value", {"value": present[GENDER]}))
        elif ins_parts is not None and sex != "U" and sex != ("M" if int(ins_parts["sex"]) % 2 else "F"):
            problems.append(Problem(GENDER, "gender.ins", {"value": present[GENDER], "digit": ins_parts["sex"]}))

    birth: date | None = None
    if BIRTH_DATE in present:
        birth = _parse_date(present[BIRTH_DATE])
        if birth is None:
            problems.append(Problem(BIRTH_DATE, "birthdate.format", {"value": present[BIRTH_DATE]}))
        elif birth > today or birth.year < 1850:
            problems.append(Problem(BIRTH_DATE, "birthdate.range", {"value": present[BIRTH_DATE]}))
        elif ins_parts is not None:
            if int(ins_parts["yy"]) != birth.year % 100:
                problems.append(Problem(BIRTH_DATE, "birthdate.ins_year",
                                        {"value": present[BIRTH_DATE], "yy": ins_parts["yy"]}))
            month = int(ins_parts["mm"])
            if 1 <= month <= 12 and month != birth.month:
                problems.append(Problem(BIRTH_DATE, "birthdate.ins_month",
                                        {"value": present[BIRTH_DATE], "mm": ins_parts["mm"]}))

    district = present.get(DISTRICT, "").upper()
    if district and not _DISTRICT.fullmatch(district):
        problems.append(Problem(DISTRICT, "district.format", {"value": present[DISTRICT]}))

    for name in (FAMILY, GIVEN):
        if name in present:
            problems += _check_name(name, present[name])
    for name in (PATIENT_ID, PATIENT_ID_ISSUER):
        if name in present:
            problems += _check_local(name, present[name])

    emergency, situation_problems = _situation(present.get(SITUATION))
    problems += situation_problems

    if problems:
        order = {name: i for i, name in enumerate(FIELDS)}
        raise ContextualCallInvalid(tuple(sorted(problems, key=lambda p: order.get(p.field, len(order)))))
    assert oid is not None and sex is not None and birth is not None  # all required and checked above
    traits = PatientTraits(
        ins=ins, ins_oid=oid, birth_name=" ".join(present[FAMILY].split()),
        first_given_name=" ".join(present[GIVEN].split()), birth_date=birth, sex=sex, birth_place=district,
        local_id=present[PATIENT_ID], local_issuer=present[PATIENT_ID_ISSUER],
    )
    return ContextualCall(traits=traits, situation=present.get(SITUATION), emergency=emergency)
