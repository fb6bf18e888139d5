"""The PRT segment (v2.7 Participation Information, also sent in v2.5/2.6 messages by French RIS).

The participation ``SB`` ("Send by", PRT-4) names the professional (PRT-5, XCN) and the structure
(PRT-8, XON) on whose behalf the document is sent; the ANS asks DRIMBox publishers to keep PRT-8.10
consistent with the CDA author's organisation (REM PFI.01).

``PRT||UC||SB^^participation|801234564895^Eric^Thomas^^^^^^ASIP-SANTE- PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS|||
Centre de radiologie Ambroise^^^^^ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^750803447``
"""

from __future__ import annotations

from drimbox.hl7.message import ParsedMessage, Segment
from drimbox.reports import Organisation, Practitioner

__all__ = ["id_nat_struct", "read_sender"]

_value = ParsedMessage.value

# Organisation identifier type (XON-7) → IdNatStruct type digit (ANS "Identifiants des structures").
_STRUCT_PREFIX = {"FINEG": "1", "FINEJ": "1", "FINESS": "1", "SIREN": "2", "SIRET": "3"}


def id_nat_struct(identifier: str, kind: str) -> str:
    """The IdNatStruct of an organisation id of type ``kind`` (``FINEG`` 750803447 → ``1750803447``).

    An id that already starts with its type digit (10 characters for a FINESS) is kept as is, as
    is an id of an unknown type.
    """
    prefix = _STRUCT_PREFIX.get(kind.upper())
    if prefix is None:
        return identifier
    bare_length = {"1": 9, "2": 9, "3": 14}[prefix]
    return prefix + identifier if len(identifier) == bare_length else identifier


def _practitioner(prt: Segment) -> Practitioner | None:
    number = _value(prt, 5, 1, 1)
    if not number:
        return None
    if len(number) == 11 and number.isdigit():
        number = "8" + number  # bare RPPS
    return Practitioner(
        id_nat_ps=number,
        family_name=_value(prt, 5, 1, 2),
        given_name=_value(prt, 5, 1, 3),
        prefix=_value(prt, 5, 1, 6) or None,
    )


def _organisation(prt: Segment) -> Organisation | None:
    identifier = _value(prt, 8, 1, 10)
    if not identifier:
        return None
    return Organisation(name=_value(prt, 8, 1, 1), id_nat_struct=id_nat_struct(identifier, _value(prt, 8, 1, 7)))


def read_sender(message: ParsedMessage) -> tuple[Practitioner | None, Organisation | None]:
    """The professional and structure of the first ``SB`` participation (``None`` when absent)."""
    for _sequence, prt in message.all("PRT"):
        if _value(prt, 4, 1, 1).upper() == "SB":
            return _practitioner(prt), _organisation(prt)
    return None, None
