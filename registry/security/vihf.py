"""The VIHF 3.0 assertion (CI-SIS "Volet Transport Synchrone", IHE XUA ITI-40) that authenticates SOAP calls.

The caller puts one SAML 2.0 ``Assertion`` in the ``wsse:Security`` header, signed (enveloped
XML-DSig) with its organisation certificate. The registry, as an X-Service Provider, verifies the
signature against its trusted CAs, the validity window, and the attributes below, then exposes the
caller as a :class:`VihfPrincipal`.

Checked on the assertion
    ``Version`` 2.0, ``ID``, ``IssueInstant`` (not in the future beyond the clock skew, not older
    than ``vihf_max_age_s``), ``Issuer``, ``Conditions`` window when present, the enveloped
    signature (one reference, to ``#<ID>``), ``Subject/NameID`` (the professional's national id:
    ``8``+RPPS, ``0``+ADELI, or ``<structure id>/<local id>``), ``AuthnStatement/AuthnContext/
    AuthnContextClassRef``.
Required attributes (:data:`REQUIRED_ATTRIBUTES`)
    see the mapping's comments for the form each must have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from registry.errors import SecurityFault
from registry.security.xmldsig import DS, ENVELOPED, InvalidSignatureError, TrustStore, verify_signature
from registry.soap.xmlparse import text_of
from registry.xds.hl7 import Hl7FormatError, parse_patient_id
from registry.xds.ns import WSSE

__all__ = ["ACCEPTED_VERSIONS", "AUTHENTICATION_MODES", "REQUIRED_ATTRIBUTES", "VihfPrincipal", "verify_vihf"]

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
HL7V3 = "urn:hl7-org:v3"
_S = f"{{{SAML}}}"

ATTR_ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
ATTR_SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ATTR_RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
ATTR_PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"

REQUIRED_ATTRIBUTES: Mapping[str, str] = {
    "VIHF_Version": "one of ACCEPTED_VERSIONS",
    "Authentification_Mode": "one of AUTHENTICATION_MODES (DIRECTE: a professional's card; INDIRECTE: the "
    "structure's certificate)",
    "Identifiant_Structure": "IdNatStruct of the caller's structure (INDIRECTE: must be an authorInstitution of "
    "what it publishes)",
    "Secteur_Activite": "<code>^1.2.250.1.71.4.2.4 (JDV_J61 healthcare facility type)",
    "Ressource_URN": "urn:dmp",
    ATTR_SUBJECT_ID: "the user's name (or software, model, service for an automated process)",
    ATTR_ROLE: "≥ 1 hl7:Role with code and codeSystem (profession, then specialty for physicians)",
    ATTR_RESOURCE_ID: "the patient's INS in CX form <INS>^^^&<INS OID>&ISO^NH",
    ATTR_PURPOSE_OF_USE: "hl7:PurposeOfUse with a code (normal, urgence…)",
    "LPS_Nom": "name of the software that issued the assertion",
    "LPS_Version": "its version",
    "LPS_ID_HOMOLOGATION_DMP": "its DMP homologation number",
}
"""VIHF 3.0 attributes the registry requires, as the DMP does, with the form each must have."""

ACCEPTED_VERSIONS = frozenset({"3.0"})
AUTHENTICATION_MODES = frozenset({"DIRECTE", "INDIRECTE"})
_SECTOR = re.compile(r"^[^^\s]+\^1\.2\.250\.1\.71\.4\.2\.4$")
_NAME_ID = re.compile(r"^(8[0-9]{11}|0[0-9]{9}|[0-9][^/\s]+/\S+)$")


@dataclass(frozen=True)
class VihfPrincipal:
    """The authenticated caller of a SOAP transaction."""

    name_id: str
    """``Subject/NameID``: the professional's national id (or the person responsible for a process)."""
    subject_name: str
    structure_id: str
    """``Identifiant_Structure``."""
    authentication_mode: str
    patient_id: str
    """``resource-id``: the only patient this assertion gives access to."""
    sector: str
    roles: tuple[tuple[str, str], ...]
    """(code, codeSystem) of each ``hl7:Role``."""
    purpose_of_use: str
    software: str
    issuer: str
    certificate_subject: str


def _parse_instant(value: str | None, what: str) -> datetime:
    if not value:
        raise SecurityFault(f"VIHF: {what} is missing")
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SecurityFault(f"VIHF: {what} {value!r} is not an xs:dateTime") from exc
    if instant.tzinfo is None:
        raise SecurityFault(f"VIHF: {what} {value!r} has no time zone (SAML times are UTC)")
    return instant.astimezone(UTC)


def _assertion(header: etree._Element | None) -> etree._Element:
    security = header.findall(f"{{{WSSE}}}Security") if header is not None else []
    if len(security) != 1:
        raise SecurityFault(
            f"exactly one wsse:Security header is required, found {len(security)}", subcode="wsse:InvalidSecurity"
        )
    assertions = security[0].findall(f"{_S}Assertion")
    if len(assertions) != 1:
        raise SecurityFault(
            f"wsse:Security must carry exactly one VIHF saml2:Assertion, found {len(assertions)}",
            subcode="wsse:InvalidSecurity",
        )
    return assertions[0]


def _attributes(assertion: etree._Element) -> dict[str, list[etree._Element]]:
    attributes: dict[str, list[etree._Element]] = {}
    for attribute in assertion.findall(f"{_S}AttributeStatement/{_S}Attribute"):
        attributes.setdefault(attribute.get("Name", ""), []).extend(attribute.findall(f"{_S}AttributeValue"))
    return attributes


def _text(attributes: Mapping[str, list[etree._Element]], name: str) -> str:
    values = [text_of(v) for v in attributes.get(name, [])]
    values = [v for v in values if v]
    if len(values) != 1:
        raise SecurityFault(f"VIHF attribute {name} must have exactly one value, found {len(values)}")
    return values[0]


def _coded(attributes: Mapping[str, list[etree._Element]], name: str, element: str) -> list[tuple[str, str]]:
    codes = []
    for value in attributes.get(name, []):
        for coded in value.findall(f"{{{HL7V3}}}{element}"):
            code, system = coded.get("code", "").strip(), coded.get("codeSystem", "").strip()
            if not code or not system:
                raise SecurityFault(f"VIHF attribute {name}: hl7:{element} needs code and codeSystem")
            codes.append((code, system))
    if not codes:
        raise SecurityFault(f"VIHF attribute {name} must carry at least one hl7:{element}")
    return codes


def _check_times(assertion: etree._Element, now: datetime, max_age: timedelta, skew: timedelta) -> None:
    issued = _parse_instant(assertion.get("IssueInstant"), "IssueInstant")
    if issued > now + skew:
        raise SecurityFault(
            f"VIHF IssueInstant {assertion.get('IssueInstant')} is in the future", subcode="wsse:FailedAuthentication"
        )
    if issued < now - max_age:
        raise SecurityFault(
            f"VIHF assertion issued at {assertion.get('IssueInstant')} has expired", subcode="wsse:FailedAuthentication"
        )
    conditions = assertion.find(f"{_S}Conditions")
    if conditions is not None:
        if conditions.get("NotBefore") and _parse_instant(conditions.get("NotBefore"), "NotBefore") > now + skew:
            raise SecurityFault("VIHF Conditions NotBefore is in the future", subcode="wsse:FailedAuthentication")
        not_after = conditions.get("NotOnOrAfter")
        if not_after and _parse_instant(not_after, "NotOnOrAfter") <= now - skew:
            raise SecurityFault(f"VIHF assertion expired at {not_after}", subcode="wsse:FailedAuthentication")


def _check_signature(assertion: etree._Element, trust: TrustStore, now: datetime) -> str:
    assertion_id = assertion.get("ID", "")
    if not assertion_id:
        raise SecurityFault("VIHF: the assertion has no ID")
    signatures = assertion.findall(f"{{{DS}}}Signature")
    if len(signatures) != 1:
        raise SecurityFault(
            f"VIHF: the assertion must carry one enveloped ds:Signature, found {len(signatures)}",
            subcode="wsse:FailedAuthentication",
        )
    references = signatures[0].findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    if len(references) != 1 or references[0].get("URI") != f"#{assertion_id}":
        raise SecurityFault(
            f"VIHF: the signature must have one reference, to #{assertion_id}", subcode="wsse:FailedAuthentication"
        )
    try:
        verified = verify_signature(
            signatures[0], trust=trust, now=now, id_attributes=("ID",), reference_transforms=frozenset({ENVELOPED})
        )
    except InvalidSignatureError as exc:
        raise SecurityFault(f"VIHF signature: {exc}", subcode="wsse:FailedAuthentication") from exc
    if verified.referenced[0] is not assertion:
        raise SecurityFault("VIHF: the signature does not cover this assertion", subcode="wsse:FailedAuthentication")
    return verified.certificate.subject.rfc4514_string()


def verify_vihf(
    header: etree._Element | None,
    *,
    trust: TrustStore,
    accepted_ins_oids: tuple[str, ...],
    now: datetime,
    max_age: timedelta,
    skew: timedelta,
) -> VihfPrincipal:
    """Authenticate a SOAP request by its VIHF assertion.

    Raises
    ------
    SecurityFault
        Named problem: missing header or assertion, bad signature or untrusted signer, outside its
        validity window, or a required attribute missing or malformed.
    """
    assertion = _assertion(header)
    if assertion.get("Version") != "2.0":
        raise SecurityFault(f"VIHF: SAML Version {assertion.get('Version')!r}, expected 2.0")
    if trust.empty:
        raise SecurityFault(
            "the registry trusts no CA (trusted_ca_file is not configured)", subcode="wsse:FailedAuthentication"
        )
    certificate_subject = _check_signature(assertion, trust, now)
    _check_times(assertion, now, max_age, skew)
    issuer = text_of(assertion.find(f"{_S}Issuer"))
    if not issuer:
        raise SecurityFault("VIHF: saml2:Issuer is missing")
    name_id = text_of(assertion.find(f"{_S}Subject/{_S}NameID"))
    if not _NAME_ID.match(name_id):
        raise SecurityFault(
            f"VIHF: Subject/NameID {name_id!r} is not a national professional identifier "
            "(8+RPPS, 0+ADELI or <structure>/<local id>)"
        )
    if not text_of(assertion.find(f"{_S}AuthnStatement/{_S}AuthnContext/{_S}AuthnContextClassRef")):
        raise SecurityFault("VIHF: AuthnStatement/AuthnContext/AuthnContextClassRef is missing")
    attributes = _attributes(assertion)
    missing = [name for name in REQUIRED_ATTRIBUTES if not attributes.get(name)]
    if missing:
        raise SecurityFault(f"VIHF: required attribute(s) missing: {', '.join(missing)}")
    version = _text(attributes, "VIHF_Version")
    if version not in ACCEPTED_VERSIONS:
        raise SecurityFault(f"VIHF_Version {version!r} is not accepted ({', '.join(sorted(ACCEPTED_VERSIONS))})")
    mode = _text(attributes, "Authentification_Mode")
    if mode not in AUTHENTICATION_MODES:
        raise SecurityFault(f"VIHF Authentification_Mode {mode!r} is not {' or '.join(sorted(AUTHENTICATION_MODES))}")
    sector = _text(attributes, "Secteur_Activite")
    if not _SECTOR.match(sector):
        raise SecurityFault(f"VIHF Secteur_Activite {sector!r} is not <code>^1.2.250.1.71.4.2.4")
    if _text(attributes, "Ressource_URN") != "urn:dmp":
        raise SecurityFault("VIHF Ressource_URN must be urn:dmp")
    patient_id = _text(attributes, ATTR_RESOURCE_ID)
    try:
        parse_patient_id(patient_id, accepted_ins_oids)
    except Hl7FormatError as exc:
        raise SecurityFault(f"VIHF {ATTR_RESOURCE_ID}: {exc}") from exc
    purpose = _coded(attributes, ATTR_PURPOSE_OF_USE, "PurposeOfUse")
    return VihfPrincipal(
        name_id=name_id,
        subject_name=_text(attributes, ATTR_SUBJECT_ID),
        structure_id=_text(attributes, "Identifiant_Structure"),
        authentication_mode=mode,
        patient_id=patient_id,
        sector=sector,
        roles=tuple(_coded(attributes, ATTR_ROLE, "Role")),
        purpose_of_use=purpose[0][0],
        software=f"{_text(attributes, 'LPS_Nom')} {_text(attributes, 'LPS_Version')} "
        f"({_text(attributes, 'LPS_ID_HOMOLOGATION_DMP')})",
        issuer=issuer,
        certificate_subject=certificate_subject,
    )
