"""The VIHF 3.0 SAML assertion of the DMP's web services (ANS CI-SIS, "Volet Transport Synchrone
pour Client Lourd", VIHF = Vecteur d'Identification et d'Habilitation Formelles).

The DMP identifies who acts, for which structure, on which patient, through a SAML 2.0 assertion in
the WS-Security header, signed with the structure's organisation certificate ("authentification
indirecte": the structure vouches for its professional). The attribute set and its order follow
the ANS validator sample ``Validateur_XDS/XDS.xml``; the assertion adds ``Conditions`` (a short
validity, so that a captured header cannot be replayed later) and uses SHA-256.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from drimbox.publish.xds.rim import Code
from drimbox.publish.xds.signing import Signer
from drimbox.publish.xds.vocabulary import NS
from drimbox.reports import Practitioner

__all__ = ["VihfIssuer", "VihfProfile", "VihfSubject"]

_SAML = f"{{{NS['saml2']}}}"
_HL7 = f"{{{NS['hl7']}}}"
_XSI_TYPE = f"{{{NS['xsi']}}}type"
VIHF_VERSION = "3.0"
PURPOSE_SCHEME = "1.2.250.1.213.1.1.4.248"
"""Mode d'accès VIHF (``normal``, ``bris_de_glace``, ``centre_regulation``)."""


@dataclass(frozen=True, slots=True)
class VihfProfile:
    """What the assertion says of the structure and the software (node settings)."""

    structure_id: str
    """``Identifiant_Structure``: the structure's IdNatStruct."""
    activity_sector: Code
    """``Secteur_Activite`` (e.g. ``SA07`` in ``1.2.250.1.71.4.2.4``)."""
    lps_id: str
    lps_name: str
    lps_version: str
    lps_homologation_id: str
    resource_urn: str = "urn:dmp"
    authentication_mode: str = "INDIRECTE"
    validity: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VihfSubject:
    """Who acts, in which capacity, on which patient (per request)."""

    practitioner: Practitioner
    profession: Code
    """Role of the professional (``10`` Médecin in ``1.2.250.1.71.1.2.7``)."""
    specialty: Code | None
    """Specialty (``SM44`` in ``1.2.250.1.71.4.2.5``)."""
    patient_id: str | None = None
    """``resource-id``: the INS in CX form; absent for requests about no single patient."""
    purpose: str = "normal"
    structure_id: str | None = None
    """The structure the professional acts for (IdNatStruct of the report's organisation); the
    profile's when ``None``. The DMP requires it to be an authorInstitution of the submission."""


def _attribute(statement: etree._Element, name: str, value: str | etree._Element) -> None:
    attribute = etree.SubElement(statement, _SAML + "Attribute", Name=name)
    holder = etree.SubElement(attribute, _SAML + "AttributeValue")
    if isinstance(value, str):
        holder.text = value
    else:
        holder.append(value)


def _ce(tag: str, code: Code, system_name: str = "") -> etree._Element:
    element = etree.Element(_HL7 + tag, nsmap={None: NS["hl7"], "xsi": NS["xsi"]})
    element.set("code", code.code)
    element.set("codeSystem", code.scheme)
    element.set("codeSystemName", system_name)
    element.set("displayName", code.display)
    element.set(_XSI_TYPE, "CE")
    return element


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class VihfIssuer:
    """Issues signed VIHF assertions for one structure."""

    def __init__(self, profile: VihfProfile, signer: Signer) -> None:
        self.profile = profile
        self.signer = signer

    def issue(self, subject: VihfSubject, *, now: datetime | None = None) -> etree._Element:
        """A signed ``saml2:Assertion`` for one request."""
        now = now or datetime.now(UTC)
        profile = self.profile
        assertion_id = f"_{uuid.uuid4()}"  # xs:ID must not start with a digit (the ANS sample's does)
        assertion = etree.Element(_SAML + "Assertion", nsmap={"saml2": NS["saml2"], "xsi": NS["xsi"]},
                                  ID=assertion_id, IssueInstant=_instant(now), Version="2.0")
        issuer = etree.SubElement(assertion, _SAML + "Issuer",
                                  Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName")
        issuer.text = self.signer.subject
        signature = self.signer.template()
        assertion.append(signature)  # after Issuer: the schema order of saml2:Assertion
        self.signer.add_reference(signature, f"#{assertion_id}", enveloped=True)
        subject_el = etree.SubElement(assertion, _SAML + "Subject")
        etree.SubElement(subject_el, _SAML + "NameID").text = subject.practitioner.id_nat_ps
        etree.SubElement(assertion, _SAML + "Conditions", NotBefore=_instant(now - timedelta(minutes=1)),
                         NotOnOrAfter=_instant(now + profile.validity))
        authn = etree.SubElement(assertion, _SAML + "AuthnStatement", AuthnInstant=_instant(now))
        context = etree.SubElement(authn, _SAML + "AuthnContext")
        etree.SubElement(context, _SAML + "AuthnContextClassRef").text = (
            "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"
        )
        statement = etree.SubElement(assertion, _SAML + "AttributeStatement")
        _attribute(statement, "VIHF_Version", VIHF_VERSION)
        _attribute(statement, "Secteur_Activite", f"{profile.activity_sector.code}^{profile.activity_sector.scheme}")
        _attribute(statement, "Ressource_URN", profile.resource_urn)
        person = subject.practitioner
        _attribute(statement, "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
                   f"{person.given_name} {person.family_name}".strip())
        _attribute(statement, "Identifiant_Structure", subject.structure_id or profile.structure_id)
        _attribute(statement, "LPS_ID", profile.lps_id)
        _attribute(statement, "LPS_Nom", profile.lps_name)
        _attribute(statement, "LPS_ID_HOMOLOGATION_DMP", profile.lps_homologation_id)
        _attribute(statement, "LPS_Version", profile.lps_version)
        if subject.patient_id:
            _attribute(statement, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", subject.patient_id)
        _attribute(statement, "Authentification_Mode", profile.authentication_mode)
        purpose = Code(subject.purpose, PURPOSE_SCHEME, "Acces normal" if subject.purpose == "normal" else "")
        _attribute(statement, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
                   _ce("PurposeOfUse", purpose, "mode acces VIHF 1.0"))
        role = etree.SubElement(statement, _SAML + "Attribute", Name="urn:oasis:names:tc:xacml:2.0:subject:role")
        for code in (subject.profession, subject.specialty):
            if code is not None:
                etree.SubElement(role, _SAML + "AttributeValue").append(_ce("Role", code))
        self.signer.sign(signature, [(assertion, "ID")])
        return assertion
