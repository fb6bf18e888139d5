"""VIHF assertion (WS-Security SAML) and DSG signature document: verified with xmlsec against the trusted CA."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from conftest import RegistryUnderTest
from lxml import etree
from xdsfactory import FAILURE, NS, SUCCESS, Mutation, Submission, Vihf, kos_bytes, set_vihf_attribute

ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"


def vihf_for(sub: Submission, **changes: object) -> Vihf:
    return dataclasses.replace(Vihf(sub.patient_id), **changes)  # type: ignore[arg-type]


def attribute(name: str, value: str | None) -> Mutation:
    return lambda assertion: set_vihf_attribute(assertion, name, value)


def drop_role_code(assertion: etree._Element) -> None:
    for role in assertion.iter(f"{{{NS['hl7']}}}Role"):
        del role.attrib["code"]


def duplicate_id(assertion: etree._Element) -> None:
    # signature wrapping attempt: a second element with the signed assertion's ID
    decoy = etree.SubElement(assertion.getparent(), "Decoy", ID=assertion.get("ID"))
    decoy.text = "x"


def change_name_id(assertion: etree._Element) -> None:
    assertion.find("saml2:Subject/saml2:NameID", NS).text = "899700000001"


def now_minus(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**delta)


FAULTS: list[tuple[str, dict[str, object], str, str]] = [
    ("signed by an untrusted key", {"signer": "rogue"}, "wsse:FailedAuthentication", "is not issued by a trusted CA"),
    ("not signed", {"signer": "none"}, "wsse:FailedAuthentication", "one enveloped ds:Signature, found 0"),
    ("changed after signing", {"tamper": change_name_id}, "wsse:FailedAuthentication", "does not verify"),
    (
        "two elements with the signed ID",
        {"tamper": duplicate_id},
        "wsse:FailedAuthentication",
        "must designate exactly one element",
    ),
    ("expired", {"issued": now_minus(days=2)}, "wsse:FailedAuthentication", "has expired"),
    ("issued in the future", {"issued": now_minus(hours=-2)}, "wsse:FailedAuthentication", "is in the future"),
    (
        "no Identifiant_Structure",
        {"mutate": attribute("Identifiant_Structure", None)},
        "wsse:InvalidSecurityToken",
        "required attribute(s) missing: Identifiant_Structure",
    ),
    (
        "no LPS_ID_HOMOLOGATION_DMP",
        {"mutate": attribute("LPS_ID_HOMOLOGATION_DMP", None)},
        "wsse:InvalidSecurityToken",
        "missing: LPS_ID_HOMOLOGATION_DMP",
    ),
    (
        "no purpose of use",
        {"mutate": attribute("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse", None)},
        "wsse:InvalidSecurityToken",
        "purposeofuse",
    ),
    (
        "VIHF_Version 2.0",
        {"mutate": attribute("VIHF_Version", "2.0")},
        "wsse:InvalidSecurityToken",
        "VIHF_Version '2.0' is not accepted",
    ),
    ("unknown authentication mode", {"mode": "CARTE"}, "wsse:InvalidSecurityToken", "Authentification_Mode 'CARTE'"),
    (
        "Ressource_URN",
        {"mutate": attribute("Ressource_URN", "urn:dp")},
        "wsse:InvalidSecurityToken",
        "Ressource_URN must be urn:dmp",
    ),
    (
        "Secteur_Activite form",
        {"mutate": attribute("Secteur_Activite", "SA25")},
        "wsse:InvalidSecurityToken",
        "Secteur_Activite 'SA25'",
    ),
    ("role without code", {"mutate": drop_role_code}, "wsse:InvalidSecurityToken", "needs code and codeSystem"),
    (
        "NameID not a national id",
        {"name_id": "jdupont"},
        "wsse:InvalidSecurityToken",
        "is not a national professional identifier",
    ),
    (
        "resource-id not an INS",
        {"patient": "12345^^^&1.2.250.1.71.4.2.2&ISO^PI"},
        "wsse:InvalidSecurityToken",
        "resource-id",
    ),
]


def test_missing_vihf_is_a_security_fault(registry: RegistryUnderTest) -> None:
    reply = registry.publish(Submission(), vihf=None)
    assert reply.status_code == 400
    assert reply.fault == (
        "soap:Sender",
        "wsse:InvalidSecurity",
        "exactly one wsse:Security header is required, found 0",
    )


@pytest.mark.parametrize(("changes", "subcode", "reason"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_bad_vihf_is_a_security_fault_naming_the_problem(
    registry: RegistryUnderTest, changes: dict[str, object], subcode: str, reason: str
) -> None:
    sub = Submission()
    reply = registry.publish(sub, vihf=vihf_for(sub, **changes))
    assert reply.status_code == 400
    assert reply.fault is not None, reply.errors
    code, actual_subcode, text = reply.fault
    assert (code, actual_subcode) == ("soap:Sender", subcode)
    assert reason in text


def test_vihf_for_another_patient_is_refused(registry: RegistryUnderTest) -> None:
    sub = Submission()
    reply = registry.publish(sub, vihf=vihf_for(sub, patient=Submission().patient_id))
    assert reply.status == FAILURE
    assert [code for code, _, _ in reply.errors] == ["XDSPatientIdDoesNotMatch"]


def test_structure_must_be_an_author_institution(registry: RegistryUnderTest) -> None:
    sub = Submission()
    reply = registry.publish(sub, vihf=vihf_for(sub, structure="410000000000001"))
    assert reply.status == FAILURE
    assert "Identifiant_Structure 410000000000001 is not the authorInstitution" in reply.errors[0][1]


def test_direct_authentication_needs_an_author_or_the_legal_authenticator(registry: RegistryUnderTest) -> None:
    sub = Submission()
    refused = registry.publish(sub, vihf=vihf_for(sub, mode="DIRECTE", name_id="810000000001"))
    assert "NameID 810000000001 is neither an authorPerson nor the legalAuthenticator" in refused.errors[0][1]
    accepted = registry.publish(sub, vihf=vihf_for(sub, mode="DIRECTE", name_id="899700367909"))
    assert (accepted.status, accepted.errors) == (SUCCESS, [])


def _tamper_signing_time(signature: bytes) -> bytes:
    return signature.replace(b"SigningTime>20", b"SigningTime>19", 1)


def _external_reference(signature: bytes) -> bytes:
    return signature.replace(b'URI="#IHEManifest"', b'URI="file:///etc/passwd"', 1)


DSG_FAILURES: list[tuple[str, dict[str, object], str]] = [
    ("changed after signing", {"dsg_tamper": _tamper_signing_time}, "the XML signature does not verify"),
    ("signed by an untrusted key", {"dsg_signer": "rogue"}, "is not issued by a trusted CA"),
    ("digest of other bytes", {"dsg_documents": "other"}, "does not match the submitted document"),
    ("KOS not in the manifest", {"dsg_documents": {}}, "documents not covered by the signature manifest"),
    ("unknown document in the manifest", {"dsg_documents": "unknown"}, "names no document of the submission"),
    ("not XML", {"dsg_tamper": lambda _: b"%PDF-1.4 not a signature"}, "is not XML"),
    ("external reference", {"dsg_tamper": _external_reference}, "is not a same-document #id reference"),
]


@pytest.mark.parametrize(("options", "reason"), [f[1:] for f in DSG_FAILURES], ids=[f[0] for f in DSG_FAILURES])
def test_bad_dsg_signature_is_refused(registry: RegistryUnderTest, options: dict[str, object], reason: str) -> None:
    sub = Submission()
    if options.get("dsg_documents") == "other":
        options = {"dsg_documents": {sub.kos_uid: kos_bytes()}}
    elif options.get("dsg_documents") == "unknown":
        options = {"dsg_documents": {sub.kos_uid: sub.kos, "1.2.3.4.5": b"x"}}
    reply = registry.publish(sub, **options)
    assert reply.status == FAILURE, reply.fault
    assert [(code, location) for code, _, location in reply.errors] == [("XDSRegistryMetadataError", "Signature01")]
    assert reply.errors[0][1].startswith("DSG signature document: ") and reason in reply.errors[0][1]
