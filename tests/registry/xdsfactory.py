"""Requests to the registry, built from the ANS reference sample with identities signed here.

The ITI-41 request is the ANS ``Validateur_XDS/XDS.xml`` sample parsed with lxml, with fresh ids
(patient INS, uniqueIds, Study UID, accession), a KOS of our own, a DSG signature document signed
with a test organisation key, and the VIHF assertion re-signed with that key. Mutations of the
metadata are applied before anything is signed, so each test changes exactly one thing.

MTOM packages are written and read here with the standard library (``email``), independently of
the registry's own MIME code.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import email.parser
import email.policy
import hashlib
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from registry.security.xmldsig import install_io_policy, manifest_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIM_M_DATA = (REPO_ROOT / ".." / "shared" / "drim-m-data").resolve()
XDS_SAMPLE = DRIM_M_DATA / "Echantillons_validateurs" / "Validateur_XDS" / "XDS.xml"
CROSS_SAMPLE = DRIM_M_DATA / "Echantillons_validateurs" / "Cross-validateur" / "Echantillons_de_validation" / "XDS.xml"

NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xdsb": "urn:ihe:iti:xds-b:2007",
    "xop": "http://www.w3.org/2004/08/xop/include",
    "hl7": "urn:hl7-org:v3",
}
DS = NS["ds"]
XADES = "http://uri.etsi.org/01903/v1.3.2#"

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"

INS_TEST_OID = "1.2.250.1.213.1.4.10"
SAMPLE_INS = "162018885045327"
SAMPLE_STRUCTURE = "499700367909006"
"""authorInstitution identifier (XON.10) of the sample: the VIHF Identifiant_Structure must name it."""
SAMPLE_SS_UID = "1.2.250.1.999.1.1.8121.7.7153"
SAMPLE_KOS_UID = "1.3.2.751468943.3.1234.16461.231103161723.1.1.1"
SAMPLE_SIG_UID = "1.2.250.1.999.1.1.8121.4.4944"
SAMPLE_STUDY_UID = "1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.116"
SAMPLE_ACCESSION = "7252295367250016"

Mutation = Callable[[etree._Element], None]


def new_uid() -> str:
    """A fresh OID under 2.25 (UUID-derived, ISO/IEC 9834-8)."""
    return f"2.25.{uuid.uuid4().int}"


def random_ins() -> str:
    """A random 15-character INS-NIR with a correct key."""
    body = f"{random.choice('12')}{random.randint(0, 99):02d}{random.randint(1, 12):02d}{random.randint(1, 95):02d}"
    body += f"{random.randint(0, 999999):06d}"
    return f"{body}{97 - int(body) % 97:02d}"


def patient_id(ins: str, oid: str = INS_TEST_OID) -> str:
    """The XDS CX form of an INS."""
    return f"{ins}^^^&{oid}&ISO^NH"


# --------------------------------------------------------------------------------------------- PKI


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tests DRIM-M"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    common_name: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None, *, ca: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (_name(common_name), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Signer:
    """A private key and its certificate (PEM), ready for xmlsec."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    def xmlsec_key(self) -> xmlsec.Key:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatPem)
        key.load_cert_from_memory(
            self.certificate.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatPem
        )
        return key


@dataclass
class TestPki:
    """A test CA, an organisation signer it issued, a rogue self-signed signer, a token issuer key."""

    directory: Path
    ca: Signer
    organisation: Signer
    rogue: Signer
    token_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, directory: Path) -> TestPki:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_cert = _certificate("Test CA", ca_key, None, ca=True)
        org_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        org_cert = _certificate("DRIMbox test organisation", org_key, (ca_cert.subject, ca_key), ca=False)
        rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rogue_cert = _certificate("DRIMbox test organisation", rogue_key, None, ca=False)
        pki = cls(
            directory,
            Signer(ca_key, ca_cert),
            Signer(org_key, org_cert),
            Signer(rogue_key, rogue_cert),
            ec.generate_private_key(ec.SECP256R1()),
        )
        (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        (directory / "token.pub.pem").write_bytes(
            pki.token_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pki

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def token_public_key_file(self) -> Path:
        return self.directory / "token.pub.pem"


# --------------------------------------------------------------------------------------------- VIHF


def _sign_enveloped(element: etree._Element, element_id: str, signer: Signer, position: int) -> None:
    signature = xmlsec.template.create(element, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256, ns="ds")
    element.insert(position, signature)
    reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri=f"#{element_id}")
    xmlsec.template.add_transform(reference, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.tree.add_ids(element, ["ID"])
    context = xmlsec.SignatureContext()
    context.key = signer.xmlsec_key()
    context.sign(signature)


def _attribute(assertion: etree._Element, name: str) -> etree._Element | None:
    found: list[etree._Element] = assertion.xpath(
        f"saml2:AttributeStatement/saml2:Attribute[@Name='{name}']", namespaces=NS
    )
    return found[0] if found else None


def set_vihf_attribute(assertion: etree._Element, name: str, value: str | None) -> None:
    """Set (or with ``None`` remove) a text attribute of the assertion."""
    attribute = _attribute(assertion, name)
    if value is None:
        if attribute is not None:
            attribute.getparent().remove(attribute)
        return
    if attribute is None:
        statement = assertion.find("saml2:AttributeStatement", NS)
        attribute = etree.SubElement(statement, f"{{{NS['saml2']}}}Attribute", Name=name)
        etree.SubElement(attribute, f"{{{NS['saml2']}}}AttributeValue")
    attribute.find("saml2:AttributeValue", NS).text = value


@dataclass
class Vihf:
    """How to (re)build the VIHF assertion of a request."""

    patient: str
    structure: str = SAMPLE_STRUCTURE
    name_id: str = "899700367909"
    mode: str = "INDIRECTE"
    signer: str = "organisation"
    """``organisation`` (trusted), ``rogue`` (untrusted) or ``none`` (no signature)."""
    issued: dt.datetime | None = None
    mutate: Mutation | None = None
    """Applied to the assertion before signing."""
    tamper: Mutation | None = None
    """Applied to the assertion after signing."""


def prepare_assertion(header: etree._Element, vihf: Vihf | None, pki: TestPki) -> None:
    """Rewrite the sample's assertion in ``header`` for ``vihf``; remove the Security header for ``None``."""
    security = header.find("wsse:Security", NS)
    if vihf is None:
        header.remove(security)
        return
    assertion = security.find("saml2:Assertion", NS)
    old = assertion.find("ds:Signature", NS)
    if old is not None:
        assertion.remove(old)
    assertion_id = f"_{uuid.uuid4()}"
    issued = (vihf.issued or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assertion.set("ID", assertion_id)
    assertion.set("IssueInstant", issued)
    assertion.find("saml2:AuthnStatement", NS).set("AuthnInstant", issued)
    assertion.find("saml2:Subject/saml2:NameID", NS).text = vihf.name_id
    set_vihf_attribute(assertion, "urn:oasis:names:tc:xacml:2.0:resource:resource-id", vihf.patient)
    set_vihf_attribute(assertion, "Identifiant_Structure", vihf.structure)
    set_vihf_attribute(assertion, "Authentification_Mode", vihf.mode)
    if vihf.mutate:
        vihf.mutate(assertion)
    if vihf.signer != "none":
        signer = pki.organisation if vihf.signer == "organisation" else pki.rogue
        _sign_enveloped(assertion, assertion_id, signer, position=1)
    if vihf.tamper:
        vihf.tamper(assertion)


def _header_template() -> etree._Element:
    sample = etree.parse(str(XDS_SAMPLE)).getroot()
    return copy.deepcopy(sample.find("soap:Header", NS))


def envelope(
    action: str, body_child: etree._Element, vihf: Vihf | None, pki: TestPki, message_id: str | None = None
) -> etree._Element:
    """A SOAP 1.2 envelope with the sample's header adapted (action, message id, VIHF)."""
    root = etree.Element(f"{{{NS['soap']}}}Envelope", nsmap={"soap": NS["soap"]})
    header = _header_template()
    header.find("wsa:Action", NS).text = action
    header.find("wsa:MessageID", NS).text = message_id or f"urn:uuid:{uuid.uuid4()}"
    prepare_assertion(header, vihf, pki)
    root.append(header)
    etree.SubElement(root, f"{{{NS['soap']}}}Body").append(body_child)
    return root


# --------------------------------------------------------------------------------------------- DSG


def dsg_document(documents: dict[str, bytes], submission_set_uid: str, signer: Signer, digest: str = "sha256") -> bytes:
    """An IHE DSG (XAdES) signature over a manifest of ``uniqueId → bytes`` digests.

    xmlsec computes the manifest digests while signing, reading each ``urn:oid:`` reference
    through the registry's input callback, which serves the bytes given to ``manifest_inputs``.
    """
    install_io_policy()
    digest_uri = {
        "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
        "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    }[digest]
    signature_id = f"sig-{uuid.uuid4()}"
    root = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS}, Id=signature_id)
    signed_info = etree.SubElement(root, f"{{{DS}}}SignedInfo")
    etree.SubElement(
        signed_info, f"{{{DS}}}CanonicalizationMethod", Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"
    )
    etree.SubElement(
        signed_info, f"{{{DS}}}SignatureMethod", Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    )
    for uri, kind in (
        ("#IHEManifest", "http://www.w3.org/2000/09/xmldsig#Manifest"),
        ("#S0-SignedProperties", "http://uri.etsi.org/01903#SignedProperties"),
    ):
        reference = etree.SubElement(signed_info, f"{{{DS}}}Reference", URI=uri, Type=kind)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
        etree.SubElement(reference, f"{{{DS}}}DigestValue")
    etree.SubElement(root, f"{{{DS}}}SignatureValue")
    etree.SubElement(etree.SubElement(root, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    qualifying = etree.SubElement(
        etree.SubElement(root, f"{{{DS}}}Object"),
        f"{{{XADES}}}QualifyingProperties",
        nsmap={"xades": XADES},
        Target=f"#{signature_id}",
    )
    signed_properties = etree.SubElement(qualifying, f"{{{XADES}}}SignedProperties", Id="S0-SignedProperties")
    etree.SubElement(
        etree.SubElement(signed_properties, f"{{{XADES}}}SignedSignatureProperties"), f"{{{XADES}}}SigningTime"
    ).text = dt.datetime.now(dt.UTC).isoformat()
    properties = etree.SubElement(etree.SubElement(root, f"{{{DS}}}Object"), f"{{{DS}}}SignatureProperties")
    etree.SubElement(
        properties, f"{{{DS}}}SignatureProperty", Id="purposeOfSignature", Target=f"#{signature_id}"
    ).text = "1.2.840.10065.1.12.1.14"
    manifest = etree.SubElement(etree.SubElement(root, f"{{{DS}}}Object"), f"{{{DS}}}Manifest", Id="IHEManifest")
    entries = [(submission_set_uid, b""), *documents.items()]
    for unique_id, _content in entries:
        reference = etree.SubElement(manifest, f"{{{DS}}}Reference", URI=f"urn:oid:{unique_id}")
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=digest_uri)
        etree.SubElement(reference, f"{{{DS}}}DigestValue")
    xmlsec.tree.add_ids(root, ["Id"])
    context = xmlsec.SignatureContext()
    context.key = signer.xmlsec_key()
    with manifest_inputs({f"urn:oid:{uid}": content for uid, content in entries}):
        context.sign(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------------------------- ITI-41


def kos_bytes(size: int = 3000) -> bytes:
    """Bytes standing for a KOS: a DICOM preamble, ``DICM``, then random content."""
    return bytes(128) + b"DICM" + os.urandom(size)


@dataclass
class Submission:
    """The identifiers of one ITI-41 request built from the sample."""

    ins: str = field(default_factory=random_ins)
    submission_set_uid: str = field(default_factory=new_uid)
    kos_uid: str = field(default_factory=new_uid)
    signature_uid: str = field(default_factory=new_uid)
    study_uid: str = field(default_factory=new_uid)
    accession: str = field(default_factory=lambda: f"ACC{random.randint(0, 10**12)}")
    kos: bytes = field(default_factory=kos_bytes)
    signature: bytes = b""

    @property
    def patient_id(self) -> str:
        return patient_id(self.ins)


def _replace_everywhere(root: etree._Element, old: str, new: str) -> None:
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if element.text and old in element.text:
            element.text = element.text.replace(old, new)
        for name, value in element.attrib.items():
            if old in value:
                element.set(name, value.replace(old, new))


def extrinsic(root: etree._Element, object_id: str) -> etree._Element:
    """The ExtrinsicObject ``object_id`` of a request."""
    found: list[etree._Element] = root.xpath(f"//rim:ExtrinsicObject[@id='{object_id}']", namespaces=NS)
    return found[0]


def slot(element: etree._Element, name: str) -> etree._Element | None:
    """A direct ``rim:Slot`` of ``element``."""
    found: list[etree._Element] = element.xpath(f"rim:Slot[@name='{name}']", namespaces=NS)
    return found[0] if found else None


def set_slot(element: etree._Element, name: str, values: list[str] | None) -> None:
    """Replace (``None``: remove) a slot of ``element``."""
    existing = slot(element, name)
    if existing is not None:
        element.remove(existing)
    if values is None:
        return
    new = etree.Element(f"{{{NS['rim']}}}Slot", name=name)
    value_list = etree.SubElement(new, f"{{{NS['rim']}}}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{{{NS['rim']}}}Value").text = value
    element.insert(0, new)


def classification(element: etree._Element, scheme: str) -> list[etree._Element]:
    """Classifications of ``scheme`` directly under ``element``."""
    found: list[etree._Element] = element.xpath(f"rim:Classification[@classificationScheme='{scheme}']", namespaces=NS)
    return found


def remove(element: etree._Element | None) -> None:
    """Detach ``element`` from its parent."""
    assert element is not None
    element.getparent().remove(element)


def submission_metadata(sub: Submission, sample: Path = XDS_SAMPLE) -> etree._Element:
    """The sample's envelope with this submission's identifiers and a KOS of the right size/hash."""
    root = etree.parse(str(sample)).getroot()
    for old, new in (
        (SAMPLE_INS, sub.ins),
        (SAMPLE_SS_UID, sub.submission_set_uid),
        (SAMPLE_KOS_UID, sub.kos_uid),
        (SAMPLE_SIG_UID, sub.signature_uid),
        (SAMPLE_STUDY_UID, sub.study_uid),
        (SAMPLE_ACCESSION, sub.accession),
    ):
        _replace_everywhere(root, old, new)
    if sample == CROSS_SAMPLE:  # its patient and study differ from the validator sample's
        _replace_everywhere(root, "274075176079430", sub.ins)
        _replace_everywhere(root, "1.2.250.1.59.844.2.1234567890123.1276394488319797597.955.1.1", sub.kos_uid)
    kos = extrinsic(root, "DocumentKOS")
    set_slot(kos, "hash", [hashlib.sha1(sub.kos).hexdigest().upper()])
    set_slot(kos, "size", [str(len(sub.kos))])
    signature = extrinsic(root, "Signature01")
    set_slot(signature, "hash", None)  # the sample copies the KOS's; the repository computes them
    set_slot(signature, "size", None)
    return root


@dataclass
class Built:
    """A request ready to POST."""

    body: bytes
    content_type: str
    message_id: str


def mtom(envelope_root: etree._Element, parts: dict[str, tuple[str, bytes]], action: str) -> tuple[bytes, str]:
    """Package an envelope and ``content id → (media type, bytes)`` parts as MTOM."""
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    chunks = [
        f'--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
        f"Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@test>\r\n\r\n".encode(),
        etree.tostring(envelope_root, xml_declaration=True, encoding="UTF-8"),
    ]
    for content_id, (media_type, data) in parts.items():
        chunks.append(
            f"\r\n--{boundary}\r\nContent-Type: {media_type}\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{content_id}>\r\n\r\n".encode()
        )
        chunks.append(data)
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    content_type = (
        f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; '
        f'start="<root.message@test>"; start-info="application/soap+xml"; action="{action}"'
    )
    return b"".join(chunks), content_type


def provide_and_register(
    sub: Submission,
    pki: TestPki,
    *,
    mutate: Mutation | None = None,
    vihf: Vihf | None | str = "default",
    dsg_signer: str = "organisation",
    dsg_documents: dict[str, bytes] | None = None,
    dsg_tamper: Callable[[bytes], bytes] | None = None,
    inline: bool = False,
    sample: Path = XDS_SAMPLE,
) -> Built:
    """An ITI-41 request for ``sub`` (see the module docstring)."""
    root = submission_metadata(sub, sample)
    if mutate:
        mutate(root)
    if not sub.signature or dsg_documents is not None or dsg_signer != "organisation":
        signer = pki.organisation if dsg_signer == "organisation" else pki.rogue
        sub.signature = dsg_document(
            dsg_documents if dsg_documents is not None else {sub.kos_uid: sub.kos}, sub.submission_set_uid, signer
        )
    signature = dsg_tamper(sub.signature) if dsg_tamper else sub.signature
    header = root.find("soap:Header", NS)
    header.find("wsa:MessageID", NS).text = message_id = f"urn:uuid:{uuid.uuid4()}"
    prepare_assertion(header, Vihf(sub.patient_id) if vihf == "default" else vihf, pki)  # type: ignore[arg-type]
    contents = {"0.2": ("application/dicom", sub.kos), "0.3": ("text/xml", signature)}
    includes: list[etree._Element] = root.xpath("//xop:Include", namespaces=NS)
    if inline:
        for include in includes:
            document = include.getparent()
            content_id = include.get("href", "")[4:]
            document.remove(include)
            document.text = base64.b64encode(contents[content_id][1]).decode()
        body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        return Built(body, f'application/soap+xml; charset=UTF-8; action="{ITI41}"', message_id)
    referenced = {i.get("href", "")[4:] for i in includes}
    body, content_type = mtom(root, {k: v for k, v in contents.items() if k in referenced}, ITI41)
    return Built(body, content_type, message_id)


# --------------------------------------------------------------------------------------------- other requests


def _slot_element(name: str, values: list[str]) -> etree._Element:
    element = etree.Element(f"{{{NS['rim']}}}Slot", name=name)
    value_list = etree.SubElement(element, f"{{{NS['rim']}}}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{{{NS['rim']}}}Value").text = value
    return element


def stored_query(
    query_id: str, params: list[tuple[str, list[str]]], pki: TestPki, vihf: Vihf | None, return_type: str = "LeafClass"
) -> Built:
    """An ITI-18 request (plain SOAP); ``params`` are (slot name, values) in order, names may repeat."""
    request = etree.Element(f"{{{NS['query']}}}AdhocQueryRequest", nsmap={"query": NS["query"], "rim": NS["rim"]})
    etree.SubElement(request, f"{{{NS['query']}}}ResponseOption", returnType=return_type, returnComposedObjects="true")
    adhoc = etree.SubElement(request, f"{{{NS['rim']}}}AdhocQuery", id=query_id)
    for name, values in params:
        adhoc.append(_slot_element(name, values))
    root = envelope(ITI18, request, vihf, pki)
    message_id = root.find("soap:Header/wsa:MessageID", NS).text
    return Built(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        f'application/soap+xml; charset=UTF-8; action="{ITI18}"',
        message_id,
    )


def find_documents(
    patient: str,
    pki: TestPki,
    *,
    extra: list[tuple[str, list[str]]] = (),  # type: ignore[assignment]
    vihf: Vihf | None | str = "default",
    return_type: str = "LeafClass",
) -> Built:
    """FindDocuments for ``patient`` with extra parameters."""
    params = [("$XDSDocumentEntryPatientId", [f"'{patient}'"]), *extra]
    if not any(name == "$XDSDocumentEntryStatus" for name, _ in extra):
        params.append(("$XDSDocumentEntryStatus", [f"('{APPROVED}')"]))
    return stored_query(
        FIND_DOCUMENTS,
        params,
        pki,
        Vihf(patient) if vihf == "default" else vihf,  # type: ignore[arg-type]
        return_type,
    )


def retrieve(items: list[tuple[str, str]], pki: TestPki, vihf: Vihf | None, *, plain: bool = True) -> Built:
    """An ITI-43 request for ``(repository unique id, document unique id)`` items."""
    request = etree.Element(f"{{{NS['xdsb']}}}RetrieveDocumentSetRequest", nsmap={"xdsb": NS["xdsb"]})
    for repository, unique_id in items:
        document_request = etree.SubElement(request, f"{{{NS['xdsb']}}}DocumentRequest")
        etree.SubElement(document_request, f"{{{NS['xdsb']}}}RepositoryUniqueId").text = repository
        etree.SubElement(document_request, f"{{{NS['xdsb']}}}DocumentUniqueId").text = unique_id
    root = envelope(ITI43, request, vihf, pki)
    message_id = root.find("soap:Header/wsa:MessageID", NS).text
    if plain:
        return Built(
            etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
            f'application/soap+xml; charset=UTF-8; action="{ITI43}"',
            message_id,
        )
    body, content_type = mtom(root, {}, ITI43)
    return Built(body, content_type, message_id)


def update_status(
    sub: Submission,
    target_uuid: str,
    pki: TestPki,
    *,
    original: str = APPROVED,
    new: str = DEPRECATED,
    vihf: Vihf | None | str = "default",
    mutate: Mutation | None = None,
) -> Built:
    """An ITI-57 request changing the availability status of ``target_uuid``.

    The SubmissionSet is the sample's, with fresh ids; the UpdateAvailabilityStatus association
    goes from it to the entry (ITI TF-2b §3.57.4.1.3.3.2).
    """
    sample = submission_metadata(Submission(ins=sub.ins))
    package = copy.deepcopy(sample.find(".//rim:RegistryPackage", NS))
    _replace_everywhere(
        package,
        package.xpath(
            "rim:ExternalIdentifier[@identificationScheme='urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8']/@value",
            namespaces=NS,
        )[0],
        new_uid(),
    )
    request = etree.Element(f"{{{NS['lcm']}}}SubmitObjectsRequest", nsmap={"lcm": NS["lcm"], "rim": NS["rim"]})
    object_list = etree.SubElement(request, f"{{{NS['rim']}}}RegistryObjectList")
    object_list.append(package)
    association = etree.SubElement(
        object_list,
        f"{{{NS['rim']}}}Association",
        id="UpdateStatus01",
        associationType="urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus",
        sourceObject=package.get("id"),
        targetObject=target_uuid,
    )
    association.append(_slot_element("OriginalStatus", [original]))
    association.append(_slot_element("NewStatus", [new]))
    if mutate:
        mutate(request)
    root = envelope(ITI57, request, Vihf(sub.patient_id) if vihf == "default" else vihf, pki)  # type: ignore[arg-type]
    message_id = root.find("soap:Header/wsa:MessageID", NS).text
    return Built(
        etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
        f'application/soap+xml; charset=UTF-8; action="{ITI57}"',
        message_id,
    )


# --------------------------------------------------------------------------------------------- responses


@dataclass
class Reply:
    """A parsed SOAP response: status, envelope, body child, attachments by Content-ID."""

    status_code: int
    content_type: str
    envelope: etree._Element
    attachments: dict[str, tuple[str, bytes]]

    @property
    def body(self) -> etree._Element:
        return self.envelope.find("soap:Body", NS)[0]

    @property
    def status(self) -> str:
        """``status`` of the RegistryResponse / AdhocQueryResponse (nested in ITI-43)."""
        node = self.body
        if node.tag == f"{{{NS['xdsb']}}}RetrieveDocumentSetResponse":
            node = node.find("rs:RegistryResponse", NS)
        return str(node.get("status"))

    @property
    def errors(self) -> list[tuple[str, str, str]]:
        """``(errorCode, codeContext, location)`` of every RegistryError."""
        return [
            (e.get("errorCode", ""), e.get("codeContext", ""), e.get("location", ""))
            for e in self.body.iter(f"{{{NS['rs']}}}RegistryError")
        ]

    @property
    def fault(self) -> tuple[str, str, str] | None:
        """``(code, subcode, reason)`` when the body is a SOAP fault."""
        if self.body.tag != f"{{{NS['soap']}}}Fault":
            return None
        subcode = self.body.findtext("soap:Code/soap:Subcode/soap:Value", default="", namespaces=NS)
        return (
            self.body.findtext("soap:Code/soap:Value", namespaces=NS),
            subcode,
            self.body.findtext("soap:Reason/soap:Text", namespaces=NS),
        )

    @property
    def relates_to(self) -> str | None:
        return self.envelope.findtext("soap:Header/wsa:RelatesTo", namespaces=NS)

    @property
    def objects(self) -> list[etree._Element]:
        """Children of the RegistryObjectList of an AdhocQueryResponse."""
        object_list = self.body.find("rim:RegistryObjectList", NS)
        return list(object_list) if object_list is not None else []


def parse_reply(status_code: int, content_type: str, content: bytes) -> Reply:
    """Parse a response, MTOM or plain (the MIME split by the standard library)."""
    attachments: dict[str, tuple[str, bytes]] = {}
    if content_type.startswith("multipart/related"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + content
        )
        parts = list(message.iter_parts())  # type: ignore[attr-defined]
        root_bytes = parts[0].get_payload(decode=True)
        for part in parts[1:]:
            attachments[str(part["Content-ID"]).strip("<>")] = (part.get_content_type(), part.get_payload(decode=True))
    else:
        root_bytes = content
    return Reply(status_code, content_type, etree.fromstring(root_bytes), attachments)
