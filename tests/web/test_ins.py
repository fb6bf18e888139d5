"""INS validation of the contextual call (F5): format, key (Corsica included), OID, coherence, every problem."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drimbox.web.ins import (
    ConsentNotGiven,
    ContextualCallInvalid,
    nir_key,
    normalise_oid,
    parse_contextual_call,
)

NIR_OID, NIA_OID, TEST_OID, DEMO_OID = (f"1.2.250.1.213.1.4.{n}" for n in (8, 9, 10, 11))


def _key(nir13: str) -> str:
    """An independent reading of the INSEE rule: 2A → 19, 2B → 18, then 97 − (N mod 97)."""
    number = int(nir13.replace("2A", "19").replace("2B", "18"))
    return f"{97 - number % 97:02d}"


def form(**overrides: str) -> dict[str, str]:
    values = {
        "Patient.identifier.value": "206127511100564", "Patient.identifier.system": NIR_OID,
        "Patient.name.family": "DUPONT", "Patient.name.given": "Hélène", "Patient.gender": "F",
        "Patient.birthDate": "2006-12-03", "Address.district": "75111", "InformationEtConsentement": "true",
        "PatientID": "IPP123", "PatientIDIssuer": "CH-DEMO-IPP",
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return values


def codes(exc: ContextualCallInvalid) -> list[tuple[str, str]]:
    return [(p.field, p.code) for p in exc.details]


def invalid(values: dict[str, str]) -> list[tuple[str, str]]:
    with pytest.raises(ContextualCallInvalid) as caught:
        parse_contextual_call(values, today=date(2025, 6, 1))
    return codes(caught.value)


def test_known_keys() -> None:
    # 2 06 12 75 111 005: woman born in December 1906 in Paris 11e, key 64 (a published example).
    assert nir_key("2061275111005") == 64
    assert nir_key("1850519004123") == 56
    # Corsica: 2A counts as 19, 2B as 18 — so 2A and 19 share a key, 2B and 18 too.
    assert nir_key("185052A004123") == 56 == 97 - 1850519004123 % 97
    assert nir_key("185052B004123") == 83 == 97 - 1850518004123 % 97
    with pytest.raises(ValueError):
        nir_key("18505X1004123")


def test_valid_nir_call() -> None:
    call = parse_contextual_call(form(), today=date(2025, 6, 1))
    traits = call.traits
    assert (traits.ins, traits.ins_oid, traits.sex, traits.birth_date) == \
        ("206127511100564", NIR_OID, "F", date(2006, 12, 3))
    assert (traits.birth_name, traits.first_given_name, traits.birth_place) == ("DUPONT", "Hélène", "75111")
    assert (traits.local_id, traits.local_issuer) == ("IPP123", "CH-DEMO-IPP")
    assert not call.emergency and call.situation is None


def test_corsican_nirs_with_their_keys() -> None:
    for dept, key in (("2A", "56"), ("2B", "83")):
        ins = f"18505{dept}004123{key}"
        call = parse_contextual_call(form(Patient__identifier__value=ins, Patient__gender="M",
                                          Patient__birthDate="1985-05-20", Address__district=f"{dept}004"),
                                     today=date(2025, 6, 1))
        assert call.traits.ins == ins and call.traits.birth_place == f"{dept}004"
    # the key of 2A is not the key of 2B
    assert invalid(form(Patient__identifier__value="18505" "2B" "004123" "56", Patient__gender="M",
                        Patient__birthDate="1985-05-20")) == [("Patient.identifier.value", "ins.key")]


def test_lower_case_corsican_letters_and_spaces_are_normalised() -> None:
    call = parse_contextual_call(form(Patient__identifier__value="1 85 05 2a 004 123 56", Patient__gender="M",
                                      Patient__birthDate="1985-05-20"), today=date(2025, 6, 1))
    assert call.traits.ins == "185052A00412356"


def test_nia_with_its_oid() -> None:
    nia13 = "7850599123456"
    call = parse_contextual_call(form(Patient__identifier__value=nia13 + _key(nia13),
                                      Patient__identifier__system=NIA_OID, Patient__gender="M",
                                      Patient__birthDate="1985-05-02"), today=date(2025, 6, 1))
    assert call.traits.ins_oid == NIA_OID
    # a provisional first digit (7/8) is not a NIR's
    assert invalid(form(Patient__identifier__value=nia13 + _key(nia13), Patient__gender="M",
                        Patient__birthDate="1985-05-02")) == [("Patient.identifier.value", "ins.first_digit")]


@pytest.mark.parametrize("system", [TEST_OID, DEMO_OID, f"urn:oid:{NIR_OID}", f"URN:OID:{TEST_OID}"])
def test_accepted_systems(system: str) -> None:
    call = parse_contextual_call(form(Patient__identifier__system=system), today=date(2025, 6, 1))
    assert call.traits.ins_oid == normalise_oid(system)


def test_wrong_key() -> None:
    assert invalid(form(Patient__identifier__value="206127511100565")) == [("Patient.identifier.value", "ins.key")]


@pytest.mark.parametrize("value, code", [("20612751110056", "ins.length"), ("2061275111005644", "ins.length"),
                                         ("20612751110A564", "ins.format"), ("20612X511100564", "ins.format")])
def test_malformed_ins(value: str, code: str) -> None:
    assert invalid(form(Patient__identifier__value=value)) == [("Patient.identifier.value", code)]


@pytest.mark.parametrize("system", ["1.2.250.1.213.1.4.2", "1.2.250.1.213.1.4.12", "urn:oid:2.16.840.1", "INS-NIR"])
def test_wrong_oid(system: str) -> None:
    assert invalid(form(Patient__identifier__system=system)) == [("Patient.identifier.system", "oid.unknown")]


def test_sex_incoherent_with_nir() -> None:
    assert invalid(form(Patient__gender="M")) == [("Patient.gender", "gender.ins")]
    assert invalid(form(Patient__gender="male")) == [("Patient.gender", "gender.ins")]
    assert invalid(form(Patient__gender="X")) == [("Patient.gender", "gender.value")]
    # unknown sex is not compared
    assert parse_contextual_call(form(Patient__gender="U"), today=date(2025, 6, 1)).traits.sex == "U"
    assert parse_contextual_call(form(Patient__gender="female"), today=date(2025, 6, 1)).traits.sex == "F"


def test_birth_date_incoherent_with_nir() -> None:
    assert invalid(form(Patient__birthDate="2007-12-03")) == [("Patient.birthDate", "birthdate.ins_year")]
    assert invalid(form(Patient__birthDate="2006-11-03")) == [("Patient.birthDate", "birthdate.ins_month")]
    # same YY and month: a NIR does not say the century
    assert parse_contextual_call(form(Patient__birthDate="1906-12-03"), today=date(2025, 6, 1)).traits.birth_date == \
        date(1906, 12, 3)


def test_birth_date_format_and_range() -> None:
    assert invalid(form(Patient__birthDate="03/12/2006")) == [("Patient.birthDate", "birthdate.format")]
    assert invalid(form(Patient__birthDate="2006-02-30")) == [("Patient.birthDate", "birthdate.format")]
    assert invalid(form(Patient__birthDate="2106-12-03")) == [("Patient.birthDate", "birthdate.range")]
    assert parse_contextual_call(form(Patient__birthDate="20061203"), today=date(2025, 6, 1)).traits.birth_date == \
        date(2006, 12, 3)


def test_unknown_month_in_nir_is_not_compared() -> None:
    nir13 = "1853099123456"  # month 30: a fictitious month (incomplete civil record)
    parse_contextual_call(form(Patient__identifier__value=nir13 + _key(nir13), Patient__gender="M",
                               Patient__birthDate="1985-07-14"), today=date(2025, 6, 1))


def test_every_missing_field_is_listed() -> None:
    problems = invalid({"Patient.identifier.value": "206127511100564"})
    assert [f for f, c in problems if c == "missing"] == [
        "Patient.identifier.system", "Patient.name.family", "Patient.name.given", "Patient.gender",
        "Patient.birthDate", "Address.district", "InformationEtConsentement", "PatientID", "PatientIDIssuer"]
    assert invalid(form(Patient__name__family="   ")) == [("Patient.name.family", "missing")]


def test_every_problem_at_once() -> None:
    problems = invalid(form(Patient__identifier__value="206127511100565", Patient__identifier__system="1.2.3",
                            Patient__name__family="<script>alert(1)</script>", Patient__birthDate="2006-13-45",
                            Address__district="7511", PatientID="IPP^1", Situation="picnic"))
    assert problems == [("Patient.identifier.value", "ins.key"), ("Patient.identifier.system", "oid.unknown"),
                        ("Patient.name.family", "name.chars"), ("Patient.birthDate", "birthdate.format"),
                        ("Address.district", "district.format"), ("PatientID", "local.chars"),
                        ("Situation", "situation.unknown")]


def test_names_allow_accents_hyphens_apostrophes() -> None:
    call = parse_contextual_call(form(Patient__name__family="LE BŒUF-D'ARC", Patient__name__given="Anaïs  Marie"),
                                 today=date(2025, 6, 1))
    assert call.traits.birth_name == "LE BŒUF-D'ARC" and call.traits.first_given_name == "Anaïs Marie"


def test_field_names_are_case_insensitive() -> None:
    lowered = {k.lower(): v for k, v in form().items()}
    assert parse_contextual_call(lowered, today=date(2025, 6, 1)).traits.ins == "206127511100564"


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "non", "no"])
def test_consent_refused(value: str) -> None:
    with pytest.raises(ConsentNotGiven):
        # refused before anything else is even looked at
        parse_contextual_call(form(InformationEtConsentement=value, Patient__gender="M"))


def test_consent_value_not_understood() -> None:
    assert invalid(form(InformationEtConsentement="peut-être")) == [("InformationEtConsentement", "consent.value")]
    for value in ("TRUE", "1", "oui", "Yes"):
        parse_contextual_call(form(InformationEtConsentement=value), today=date(2025, 6, 1))


@pytest.mark.parametrize("value", ["URGENCE", "urgence", "Bris de glace", "BRIS_DE_GLACE", "emergency"])
def test_emergency_situation(value: str) -> None:
    call = parse_contextual_call(form(Situation=value), today=date(2025, 6, 1))
    assert call.emergency and call.situation == value


def test_problems_read_in_english_for_logs() -> None:
    with pytest.raises(ContextualCallInvalid) as caught:
        parse_contextual_call(form(Patient__identifier__value="206127511100565"), today=date(2025, 6, 1))
    assert caught.value.problems == ("The key “65” of the INS “206127511100565” does not match its first 13 "
                                     "characters (typing error?).",)


_DEPTS = st.one_of(st.integers(1, 95).map(lambda d: f"{d:02d}").filter(lambda d: d != "20"),
                   st.sampled_from(["2A", "2B"]))


@given(sex=st.sampled_from("12"), born=st.dates(date(1900, 1, 1), date(2024, 12, 31)), dept=_DEPTS,
       commune=st.integers(1, 999), order=st.integers(1, 999), oid=st.sampled_from([NIR_OID, TEST_OID, DEMO_OID]))
def test_generated_valid_nirs_validate(sex: str, born: date, dept: str, commune: int, order: int, oid: str) -> None:
    nir13 = f"{sex}{born.year % 100:02d}{born.month:02d}{dept}{commune:03d}{order:03d}"
    ins = nir13 + _key(nir13)
    call = parse_contextual_call(form(Patient__identifier__value=ins, Patient__identifier__system=oid,
                                      Patient__gender="M" if sex == "1" else "F",
                                      Patient__birthDate=born.isoformat(), Address__district=f"{dept}{commune:03d}"),
                                 today=date(2025, 6, 1))
    assert call.traits.ins == ins and call.traits.birth_date == born


@given(nir=st.tuples(st.sampled_from("12"), st.integers(0, 99), st.integers(1, 12), _DEPTS, st.integers(1, 999),
                     st.integers(1, 999)),
       position=st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12]), delta=st.integers(1, 9))
def test_one_changed_digit_breaks_the_key(nir: tuple[str, int, int, str, int, int], position: int, delta: int) -> None:
    nir13 = f"{nir[0]}{nir[1]:02d}{nir[2]:02d}{nir[3]}{nir[4]:03d}{nir[5]:03d}"
    changed = nir13[:position] + str((int(nir13[position]) + delta) % 10) + nir13[position + 1:]
    assert nir_key(changed) != int(_key(nir13))
